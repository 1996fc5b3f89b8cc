"""No silent garbage, no lost work: units, divergence, interruption, determinism."""

import _thread
import hashlib
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from skinfomax import InfoMaxVAETransformer
from skinfomax._networks import build_mlp
from skinfomax._training import TrainingDiverged

from .conftest import TINY


@pytest.fixture(scope="module")
def cancer():
    """Raw breast-cancer features: units from about 1e-3 to about 1e3."""
    X, _ = load_breast_cancer(return_X_y=True)
    rng = np.random.RandomState(0)
    X = X[rng.permutation(len(X))[:200]]
    # A constant column and an all-zero one must not break standardisation.
    return np.hstack([X, np.full((len(X), 1), 7.5), np.zeros((len(X), 1))])


def small_vae(**params):
    return InfoMaxVAETransformer(**{**TINY, "n_components": 2, "batch_size": 50, **params})


def fitted_figures(vae, X):
    return vae.transform(X), vae.score(X), vae.history_


# -- units -----------------------------------------------------------------------
def test_units_do_not_matter(cancer):
    X = cancer
    factors = 10.0 ** np.random.RandomState(1).uniform(-8, 8, X.shape[1])
    scalings = {
        "1e6 x + 1e3": (1e6, 1e3),
        "x / 1e4": (1e-4, 0.0),
        "per-feature factors": (factors, 0.0),
        "around 1e30": (1e30, 5e30),
    }
    vae = small_vae().fit(X)
    Z, score, history = fitted_figures(vae, X)
    X_hat = vae.inverse_transform(Z[:5])
    for name, (a, b) in scalings.items():
        X_scaled = X * a + b
        vae = small_vae().fit(X_scaled)
        Z_s, score_s, history_s = fitted_figures(vae, X_scaled)
        np.testing.assert_allclose(Z_s, Z, rtol=0, atol=1e-5, err_msg=name)
        assert score_s == pytest.approx(score, abs=1e-5), name
        for h, h_s in zip(history, history_s):
            assert h_s["mi"] == pytest.approx(h["mi"], abs=1e-5), name
            assert h_s["kl"] == pytest.approx(h["kl"], abs=1e-5), name
        # inverse_transform answers in the user's units.
        np.testing.assert_allclose(vae.inverse_transform(Z_s[:5]), X_hat * a + b,
                                   rtol=1e-4, atol=1e-6 * np.abs(b))


def test_reconstruction_nll_is_in_the_users_units(cancer):
    """The density of ``a * x + b`` is that of x over ``prod |a|``: NLLs shift by sum log a."""
    X = cancer[:, :-2]
    factors = 10.0 ** np.random.RandomState(2).uniform(-5, 5, X.shape[1])
    plain, scaled = small_vae().fit(X), small_vae().fit(X * factors - 3.0)
    shift = np.log(factors).sum()
    for h, h_s in zip(plain.history_, scaled.history_):
        assert h_s["reconstruction"] == pytest.approx(h["reconstruction"] + shift, abs=1e-3)
    assert scaled.elbo(X * factors - 3.0) == pytest.approx(plain.elbo(X) - shift, abs=1e-3)


def test_raw_features_fit_as_if_standard_scaled(cancer):
    X = cancer[:, :-2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no implausible-bound warning, no overflow
        raw = small_vae(max_iter=10).fit(X)
        score = raw.score(X)
    X_std = StandardScaler().fit_transform(X)
    scaled = small_vae(max_iter=10).fit(X_std)
    np.testing.assert_allclose(raw.transform(X), scaled.transform(X_std), atol=1e-4)
    assert score == pytest.approx(scaled.score(X_std), abs=1e-4)
    assert score > -1.0


def test_constant_training_feature_gives_finite_codes_off_its_value(cancer):
    vae = small_vae().fit(cancer)
    x = cancer[:3].copy()
    x[:, -2] = [0.0, 7.5e6, -1e9]  # the training column was 7.5 everywhere
    x[:, -1] = [1.0, -1e6, 3.0]  # and this one 0
    assert np.isfinite(vae.transform(x)).all()


def test_bernoulli_data_are_fed_as_they_are(digits):
    X, _ = digits
    vae = small_vae(likelihood="bernoulli").fit(X)
    np.testing.assert_array_equal(vae._engine.inputs(X), X.astype(np.float32))
    X_hat = vae.inverse_transform(vae.transform(X))
    assert X_hat.min() >= 0 and X_hat.max() <= 1


def test_rows_beyond_float32_are_a_clear_error(cancer, digits):
    vae = small_vae().fit(cancer)
    far = cancer[:2] * 1e300
    with pytest.raises(ValueError, match="float32 cannot hold"):
        vae.transform(far)
    with pytest.raises(ValueError, match="float32's range"):
        vae.inverse_transform(np.full((1, 2), 1e39))
    with pytest.raises(ValueError, match="NaN or infinite"):
        vae.inverse_transform(np.array([[3e38, 3e38], [-3e38, 3e38], [3e38, -3e38]]))
    bernoulli = small_vae(likelihood="bernoulli").fit(digits[0])
    huge = np.full((2, 64), 1e39)
    with pytest.raises(ValueError, match="float32's range"):
        bernoulli.transform(huge)


# -- divergence ----------------------------------------------------------------------
class CountingDecoder(torch.nn.Module):
    """An MLP decoder that counts its training steps and acts from the ``at``-th on."""

    def __init__(self, n_codes, n_features, at, action):
        super().__init__()
        self.net = build_mlp([n_codes, 16, n_features])
        self.steps, self.at, self.action = 0, at, action

    def forward(self, codes):
        out = self.net(codes)
        if self.training:
            self.steps += 1
            if self.steps >= self.at:
                return self.action(out)
        return out


def poisoned_decoder(input_shape, n_components, n_info_components):
    """NaN from the 9th step on: with 4 steps an epoch, a divergence in epoch 3."""
    return CountingDecoder(n_components + n_info_components, input_shape[0], 9,
                           lambda out: out * float("nan"))


def test_divergence_names_the_epoch_and_leaves_an_unfitted_estimator_unfitted(digits):
    X = digits[0][:64]
    # 64 rows in batches of 16: 4 steps an epoch; the 9th step is epoch 3's first.
    vae = small_vae(batch_size=16, max_iter=5, decoder=poisoned_decoder)
    with pytest.raises(TrainingDiverged, match="epoch 3") as error:
        vae.fit(X)
    for cause in ("learning_rate", "critic_learning_rate", "alpha", "unscaled"):
        assert cause in str(error.value)
    assert not hasattr(vae, "n_iter_") and not hasattr(vae, "_engine")


def test_divergence_with_early_stopping_keeps_the_best_epoch(digits):
    X = digits[0][:80]
    vae = small_vae(batch_size=16, max_iter=6, decoder=poisoned_decoder, early_stopping=True,
                    validation_fraction=0.2, tol=0.0, n_iter_no_change=10)
    with pytest.warns(RuntimeWarning, match="diverged in epoch 3.*keeps the weights"):
        vae.fit(X)
    assert [h["epoch"] for h in vae.history_] == [1, 2]
    assert np.isfinite(vae.transform(X)).all() and np.isfinite(vae.score(X))


@pytest.mark.parametrize("incremental", [False, True])
def test_divergence_of_a_continuing_fit_keeps_the_previous_state(digits, incremental):
    X = digits[0]

    def train(vae):
        return vae.partial_fit(X) if incremental else vae.fit(X)

    vae, reference = (small_vae(max_iter=2, warm_start=True) for _ in range(2))
    train(vae), train(reference)
    Z, history = vae.transform(X), list(vae.history_)
    vae.set_params(learning_rate=1e12, critic_learning_rate=1e12)
    with pytest.raises(TrainingDiverged, match=f"epoch {len(history) + 1}:"):
        train(vae)
    np.testing.assert_array_equal(vae.transform(X), Z)
    assert vae.history_ == history and vae.n_iter_ == len(history)
    # Weights, optimiser moments, random streams and history length all went back:
    # continuing now is bit for bit the run that never failed.
    vae.set_params(learning_rate=1e-3, critic_learning_rate=1e-3)
    train(vae), train(reference)
    np.testing.assert_array_equal(vae.transform(X), reference.transform(X))
    assert vae.history_ == reference.history_


# -- interruption ----------------------------------------------------------------------
def send_sigint(how):
    """A SIGINT to the main thread, as Ctrl-C sends it."""
    if how == "interrupt_main":
        _thread.interrupt_main()
    else:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def ctrl_c_from_another_thread(how="interrupt_main", after=None, when=None):
    """Send a SIGINT from another thread ``after`` seconds, or once the event ``when`` is set."""
    thread = threading.Thread(
        target=lambda: (time.sleep(after) if when is None else when.wait(600), send_sigint(how))
    )
    thread.start()
    return thread


def signalling_decoder(event):
    """A decoder that sets ``event`` at its 9th step (4 steps an epoch: epoch 3 starts)."""
    def factory(input_shape, n_components, n_info_components):
        return CountingDecoder(n_components + n_info_components, input_shape[0], 9,
                               lambda out: (event.set(), out)[1])
    return factory


@pytest.mark.parametrize("how", ["interrupt_main", "pthread_kill"])
def test_ctrl_c_keeps_the_completed_epochs(digits, how):
    X = digits[0][:64]
    started_epoch_3 = threading.Event()
    vae = small_vae(batch_size=16, max_iter=100_000, decoder=signalling_decoder(started_epoch_3))
    thread = ctrl_c_from_another_thread(how, when=started_epoch_3)
    with pytest.warns(RuntimeWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        vae.fit(X)
    thread.join()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert vae.n_iter_ == len(vae.history_) >= 2
    assert [h["epoch"] for h in vae.history_] == list(range(1, vae.n_iter_ + 1))
    assert all(np.isfinite(list(h.values())).all() for h in vae.history_)
    assert np.isfinite(vae.transform(X)).all()
    vae.partial_fit(X)  # and it goes on
    assert vae.n_iter_ == len(vae.history_) and vae.history_[-1]["epoch"] == vae.n_iter_


def test_ctrl_c_before_an_epoch_completes_changes_nothing(digits):
    X = digits[0]
    vae = small_vae(max_iter=1).fit(X)
    Z, history = vae.transform(X), list(vae.history_)
    # One epoch of 2-row batches over 40,000 rows outlasts the delay by far.
    chunk = np.tile(X, (167, 1))[:40_000]
    vae.set_params(batch_size=2)
    thread = ctrl_c_from_another_thread(after=2.0)
    with pytest.warns(RuntimeWarning, match="as it was"), pytest.raises(KeyboardInterrupt):
        vae.partial_fit(chunk)
    thread.join()
    np.testing.assert_array_equal(vae.transform(X), Z)
    assert vae.history_ == history and vae.batch_size_ == 50


def test_interrupt_inside_a_step_still_leaves_a_consistent_model(digits):
    """Where the interrupt cannot be deferred (a handler of the caller's), it lands mid-step."""
    X = digits[0][:64]

    def raising_handler(signum, frame):
        raise KeyboardInterrupt

    started_epoch_3 = threading.Event()
    vae = small_vae(batch_size=16, max_iter=100_000, decoder=signalling_decoder(started_epoch_3))
    previous = signal.signal(signal.SIGINT, raising_handler)
    try:
        thread = ctrl_c_from_another_thread(when=started_epoch_3)
        with pytest.warns(RuntimeWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
            vae.fit(X)
        thread.join()
        assert signal.getsignal(signal.SIGINT) is raising_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert vae.n_iter_ == len(vae.history_) >= 2
    assert np.isfinite(vae.transform(X)).all()


# -- determinism ----------------------------------------------------------------------
_DIGEST = """
import hashlib, pickle, numpy as np
from sklearn.datasets import load_digits
from skinfomax import InfoMaxVAETransformer
X = load_digits().data[:240] / 16.0
vae = InfoMaxVAETransformer(n_components=2, hidden_layer_sizes=(16,), batch_size=50,
    critic_hidden_layer_sizes=(16,), max_iter=3, random_state=0, n_threads=1).fit(X)
print(hashlib.sha256(pickle.dumps((vae.transform(X), vae.history_, vae.score(X)))).hexdigest())
"""


def digest(vae, X):
    return hashlib.sha256(pickle.dumps((vae.transform(X), vae.history_, vae.score(X)))).hexdigest()


def test_same_seed_same_model_in_process_across_processes_and_pickles(digits):
    X = digits[0]
    make = lambda: small_vae(n_threads=1)  # noqa: E731
    first = digest(make().fit(X), X)
    assert digest(make().fit(X), X) == first
    assert digest(pickle.loads(pickle.dumps(make())).fit(X), X) == first
    assert digest(pickle.loads(pickle.dumps(make().fit(X))), X) == first
    other = subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other == first


def test_set_params_between_fits_leaks_nothing(digits):
    X = digits[0]
    vae = small_vae(n_threads=1)
    first = digest(vae.fit(X), X)
    vae.set_params(n_components=3, alpha=0.3, learning_rate=1e-2, batch_size=16)
    vae.fit(X)
    vae.set_params(n_components=2, alpha=1.0, learning_rate=1e-3, batch_size=50)
    assert digest(vae.fit(X), X) == first


@pytest.fixture
def float64_default():
    """A caller who made float64 torch's default dtype."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_public_methods_leave_the_callers_torch_state(digits, float64_default):
    X = digits[0]
    torch.manual_seed(5)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    vae = small_vae(n_threads=1, n_info_components=1)
    calls = {
        "fit": lambda: vae.fit(X),
        "partial_fit": lambda: vae.partial_fit(X),
        "fit_transform": lambda: vae.fit_transform(X),
        "transform": lambda: vae.transform(X),
        "inverse_transform": lambda: vae.inverse_transform(np.zeros((2, 3))),
        "reconstruct": lambda: vae.reconstruct(X, keep="z"),
        "latent_traversal": lambda: vae.latent_traversal(X[0], "c0", [0.0, 1.0]),
        "score": lambda: vae.score(X),
        "elbo": lambda: vae.elbo(X),
        "kl_per_dimension": lambda: vae.kl_per_dimension(X),
        "mi_bounds": lambda: vae.mi_bounds(X, refit_critic=True, refit_max_iter=2),
    }
    for name, call in calls.items():
        call()
        assert torch.equal(torch.get_rng_state(), state), name
        assert torch.get_num_threads() == threads, name
        assert torch.get_default_dtype() == torch.float64, name


def test_callers_default_dtype_changes_nothing(digits):
    X = digits[0]
    expected = digest(small_vae(n_threads=1).fit(X), X)
    torch.set_default_dtype(torch.float64)
    try:
        assert digest(small_vae(n_threads=1).fit(X), X) == expected
    finally:
        torch.set_default_dtype(torch.float32)
