"""MI bounds of the transformer, the fresh-critic protocol, and diagnostics()."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfomax import InfoMaxVAETransformer, diagnostics, reconstruction_scorer
from skinfomax import active_units

from .conftest import TINY, assert_unchanged, snapshot


@pytest.fixture(scope="module")
def trained(digits):
    X, _ = digits
    vae = InfoMaxVAETransformer(n_components=3, batch_size=16, **{**TINY, "max_iter": 15})
    return vae.fit(X[:160])


def test_active_units_on_hand_constructed_means():
    # Columns of +-a have variance a^2: 0.25, 0.04 (below 0.05), 0.0625 (exact in binary).
    signs = np.tile([-1.0, 1.0], 50)[:, None]
    means = signs * np.array([0.5, 0.2, 0.25])
    np.testing.assert_array_equal(active_units(means), [True, False, True])
    # The threshold is inclusive.
    np.testing.assert_array_equal(active_units(means, threshold=0.0625), [True, False, True])
    np.testing.assert_array_equal(active_units(means, threshold=0.3), [False] * 3)
    with pytest.raises(ValueError, match="threshold"):
        active_units(means, threshold=-1)


def test_lower_bound_is_score_and_below_rate(trained, digits):
    X, _ = digits
    bounds = trained.mi_bounds(X[160:])
    assert bounds.lower == pytest.approx(trained.score(X[160:]), rel=1e-5, abs=1e-6)
    assert bounds.lower <= bounds.upper + 2 * bounds.lower_se
    assert bounds.upper > 0 and bounds.upper_se > 0 and bounds.lower_se > 0


def test_fresh_critic_on_frozen_encoder_changes_nothing(trained, digits):
    X, _ = digits
    before = snapshot(trained)  # every weight, the critic's included
    bounds = trained.mi_bounds(X[160:], refit_critic=True, refit_max_iter=10)
    assert np.isfinite(bounds.lower) and bounds.lower <= bounds.upper + 2 * bounds.lower_se
    assert bounds == trained.mi_bounds(X[160:], refit_critic=True, refit_max_iter=10)
    assert_unchanged(trained, before)


def test_info_codes_have_no_finite_upper_bound(fitted, digits):
    X, _ = digits
    bounds = fitted.mi_bounds(X)
    assert bounds.upper == np.inf and np.isnan(bounds.upper_se)
    assert np.isfinite(bounds.lower)


def test_diagnostics_keys_and_values(trained, digits):
    X, y = digits
    report = diagnostics(trained, X[160:], y[160:], cv=3)
    assert set(report) == {
        "n_active_units", "active_units", "posterior_mean_variance", "mi_lower",
        "mi_lower_se", "mi_upper", "mi_upper_se", "reconstruction_mse", "kl_per_dimension",
        "linear_probe_accuracy", "trustworthiness",
    }
    Z = trained.transform(X[160:])
    np.testing.assert_allclose(report["posterior_mean_variance"], Z.var(axis=0))
    assert report["n_active_units"] == int((Z.var(axis=0) >= 0.05).sum())
    # Closed-form KL of each z dimension from the encoder's posterior, averaged over samples.
    with torch.no_grad():
        # The networks see X in the model's standard units.
        inputs = trained._engine.rows(X[160:]).tensor
        mean, log_var, _ = trained.encoder_(inputs)
    kl = (0.5 * (mean.square() + log_var.exp() - 1.0 - log_var)).mean(0).double().numpy()
    np.testing.assert_allclose(report["kl_per_dimension"], kl, rtol=1e-5, atol=1e-7)
    assert report["kl_per_dimension"].sum() == pytest.approx(report["mi_upper"], rel=1e-5)
    assert report["reconstruction_mse"] == pytest.approx(-reconstruction_scorer(trained, X[160:]))
    # The documented probe (logistic regression on standardised codes, 3 stratified folds)
    # on other folds: measured 0.50 against 0.55; chance is 0.10.
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    accuracy = cross_val_score(probe, Z, y[160:], cv=3).mean()
    assert report["linear_probe_accuracy"] == pytest.approx(accuracy, abs=0.15)
    assert report["linear_probe_accuracy"] > 0.3
    assert "linear_probe_accuracy" not in diagnostics(trained, X[160:])
    # Digits have tied distances, whose ranks either order may take: a few ranks apart.
    assert report["trustworthiness"] == pytest.approx(trustworthiness_by_hand(X[160:], Z, 5),
                                                      abs=1e-4)


def trustworthiness_by_hand(X, Z, k):
    """Venna & Kaski's T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum over i and over the codes'
    k nearest neighbours j of i that are not among X's of (rank of j among X's neighbours
    of i) - k, by explicit loops.
    """
    n = len(X)
    total = 0.0
    for i in range(n):
        by_x = [j for j in np.argsort(((X - X[i]) ** 2).sum(1), kind="stable") if j != i]
        by_z = [j for j in np.argsort(((Z - Z[i]) ** 2).sum(1), kind="stable") if j != i]
        rank = {j: r + 1 for r, j in enumerate(by_x)}
        total += sum(rank[j] - k for j in by_z[:k] if rank[j] > k)
    return 1.0 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * total


def test_trustworthiness_is_one_for_codes_that_keep_neighbours_and_falls_otherwise():
    """Codes that are X scaled keep every neighbourhood (1 exactly); shuffled codes do not."""
    rng = np.random.RandomState(0)
    X = rng.rand(40, 3)
    assert trustworthiness_by_hand(X, 2.0 * X, 5) == 1.0
    assert trustworthiness_by_hand(X, rng.permutation(X), 5) < 0.8


def test_diagnostics_through_a_pipeline(digits):
    X, _ = digits
    pipe = make_pipeline(StandardScaler(), InfoMaxVAETransformer(n_components=2, **TINY)).fit(X)
    report = diagnostics(pipe, X[:50])
    assert report["mi_lower"] == pytest.approx(pipe[-1].score(pipe[0].transform(X[:50])))


def test_bad_inputs_raise_and_change_nothing(trained, digits):
    X, y = digits
    before = snapshot(trained)
    with pytest.raises(TypeError, match="InfoMaxVAETransformer"):
        diagnostics(PCA(2).fit(X), X)
    with pytest.raises(NotFittedError):
        diagnostics(InfoMaxVAETransformer(), X)
    with pytest.raises(ValueError, match="inconsistent"):
        diagnostics(trained, X, y[:10])
    with pytest.raises(ValueError, match="cv"):
        diagnostics(trained, X, y, cv=1)
    with pytest.raises(ValueError, match="n_neighbors"):
        diagnostics(trained, X[:10], n_neighbors=5)
    with pytest.raises(ValueError, match="features"):
        trained.mi_bounds(X[:, :10])
    with pytest.raises(ValueError, match="at least 8"):
        trained.mi_bounds(X[:5], refit_critic=True)
    with pytest.raises(ValueError, match="at least 2"):
        trained.mi_bounds(X[:1])
    with pytest.raises(TypeError, match="refit_critic"):
        trained.mi_bounds(X, refit_critic="yes")
    with pytest.raises(ValueError, match="refit_max_iter"):
        trained.mi_bounds(X, refit_critic=True, refit_max_iter=0)
    assert_unchanged(trained, before)
