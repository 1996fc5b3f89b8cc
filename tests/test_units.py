"""Input units: the Gaussian model works in standard units, whatever X's units."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler


from .conftest import small_vae


@pytest.fixture(scope="module")
def cancer():
    """Raw breast-cancer features: units from about 1e-3 to about 1e3."""
    X, _ = load_breast_cancer(return_X_y=True)
    rng = np.random.RandomState(0)
    X = X[rng.permutation(len(X))[:200]]
    # A constant column and an all-zero one must not break standardisation.
    return np.hstack([X, np.full((len(X), 1), 7.5), np.zeros((len(X), 1))])


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


def test_a_later_chunk_beyond_reach_widens_that_features_scale_to_its_spread():
    from skinfomax._units import InputUnits

    first = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.1, 4.0]])
    units = InputUnits.fit(first)
    # Feature 0: centre 0.025, sd 0.0433 (range floor 0.01); feature 1: centre 2.5, sd 1.118.
    np.testing.assert_allclose(units.scale, [np.sqrt(0.1 ** 2 * 3 / 16), np.sqrt(1.25)])
    assert units.covering(first) is units  # the data it was fitted on: nothing to widen
    later = np.array([[1.0, 2.0], [0.0, 3.0], [1.0, 2.5], [0.5, 4.0]])
    wider = units.covering(later)
    # Feature 0 reaches 0.975 from its centre, 22 scales: widened to the root mean square of
    # its distances to the centre; feature 1 stays within reach and keeps its scale.
    distances = later[:, 0] - 0.025
    np.testing.assert_allclose(wider.scale, [np.sqrt(np.mean(distances ** 2)), np.sqrt(1.25)])
    np.testing.assert_array_equal(wider.center, units.center)
    assert wider.log_scale_sum > units.log_scale_sum


def test_constant_training_feature_gives_finite_codes_off_its_value(cancer):
    vae = small_vae().fit(cancer)
    x = cancer[:3].copy()
    x[:, -2] = [0.0, 7.5e6, -1e9]  # the training column was 7.5 everywhere
    x[:, -1] = [1.0, -1e6, 3.0]  # and this one 0
    assert np.isfinite(vae.transform(x)).all()


def test_bernoulli_data_are_fed_as_they_are(digits):
    X, _ = digits
    vae = small_vae(likelihood="bernoulli").fit(X)
    np.testing.assert_array_equal(vae._engine.rows(X).tensor.numpy(), X.astype(np.float32))
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
