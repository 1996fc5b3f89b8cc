"""Property-based bad input: every case works with finite output or raises a named error.

Random shapes (1-50 rows, 1-20 features), dtypes (float16/32/64, int, bool),
values (ordinary, tiny, large, constant columns, NaN/inf in some rows) and
parameter values within their constraints. An oracle written from the
documented rules, not from the code, says which error each case must raise
(if any); anything else -- a torch error, a non-finite output, a different
message -- fails. The ``ci`` profile is fixed (derandomized, bounded
examples); ``SKINFOMAX_TEST_PROFILE=long`` runs the long one
(benchmarks/README.md).
"""

import math
import os
import warnings
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinfomax import InfoMaxVAETransformer

_COMMON = dict(derandomize=True, deadline=timedelta(seconds=30), print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILES = {
    "ci": settings(max_examples=40, **_COMMON),
    "long": settings(max_examples=1500, **_COMMON),
}
PROFILE = PROFILES[os.environ.get("SKINFOMAX_TEST_PROFILE", "ci")]

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_]
# Magnitudes of the values, tiny to huge: the Gaussian model works in standard
# units (skinfomax._units), so money-sized (1e10) and 1e30 values train too.
SCALES = [1e-30, 1e-3, 1.0, 1e4, 1e10, 1e30]


@st.composite
def matrices(draw, min_rows=1):
    n_rows = draw(st.integers(min_rows, 50))
    n_features = draw(st.integers(1, 20))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    if dtype == np.bool_:
        X = rng.rand(n_rows, n_features) > 0.5
    elif np.issubdtype(dtype, np.integer):
        low, high = draw(st.sampled_from([(0, 2), (-5, 6), (0, 1000)]))
        X = rng.randint(low, high, size=(n_rows, n_features)).astype(dtype)
    else:
        scale = draw(st.sampled_from(SCALES))
        offset = draw(st.sampled_from([0.0, 0.5, 100.0])) * scale
        with np.errstate(over="ignore"):  # float16 overflows to inf: a case in itself
            X = (rng.randn(n_rows, n_features) * scale + offset).astype(dtype)
        constant = draw(st.lists(st.booleans(), min_size=n_features, max_size=n_features))
        X[:, np.asarray(constant)] = X[0, np.asarray(constant)]
        bad_rows = draw(st.sets(st.integers(0, n_rows - 1), max_size=2))
        for row in bad_rows:
            X[row, draw(st.integers(0, n_features - 1))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf])
            )
    return X


@st.composite
def parameters(draw):
    return dict(
        n_components=draw(st.integers(1, 4)),
        n_info_components=draw(st.integers(0, 2)),
        alpha=draw(st.sampled_from([0.0, 1.0, 10.0])),
        beta=draw(st.sampled_from([0.0, 0.5, 4.0])),
        hidden_layer_sizes=draw(st.sampled_from([(), (4,), (6, 3)])),
        critic_hidden_layer_sizes=draw(st.sampled_from([(4,), (5, 3)])),
        likelihood=draw(st.sampled_from(["gaussian", "bernoulli"])),
        mi_estimator=draw(st.sampled_from(["nwj", "dv", "infonce"])),
        batch_size=draw(st.one_of(st.just("auto"), st.integers(2, 60))),
        max_iter=draw(st.integers(1, 2)),
        learning_rate=draw(st.sampled_from([1e-4, 1e-3, 1e-1])),
        early_stopping=draw(st.booleans()),
        validation_fraction=draw(st.sampled_from([0.05, 0.2, 0.5])),
        precision=draw(st.sampled_from(["float32", "bfloat16"])),
        random_state=0,
        device="cpu",
    )


def expected_fit_error(X, params, method):
    """The documented refusal for this fit, in the order the rules are checked; None if none."""
    n_rows = X.shape[0]
    values = X.astype(np.float64)
    if not np.isfinite(values).all():  # scikit-learn's check_array looks at values first
        return "NaN|infinity"
    if n_rows < 2:
        return "minimum of 2"
    if params["likelihood"] == "bernoulli" and (values.min() < 0 or values.max() > 1):
        return r"bernoulli.*\[0, 1\]"
    if method == "partial_fit" and params["early_stopping"]:
        return "early_stopping"
    if method == "fit" and params["early_stopping"]:
        n_valid = math.ceil(params["validation_fraction"] * n_rows)
        if n_valid < 2 or n_rows - n_valid < 2:
            return "2 training and 2 validation"
    return None


def _fit(X, params, method):
    vae = InfoMaxVAETransformer(**params)
    with warnings.catch_warnings():
        # Clipped batch sizes and implausible bounds on tiny fits warn by design.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(vae, method)(X)


@PROFILE
@given(X=matrices(), params=parameters(), method=st.sampled_from(["fit", "partial_fit"]))
def test_fit_works_or_names_the_problem(X, params, method):
    expected = expected_fit_error(X, params, method)
    before = X.copy()
    if expected is not None:
        with pytest.raises(ValueError, match=expected):
            _fit(X, params, method)
        np.testing.assert_array_equal(X, before)
        return
    vae = _fit(X, params, method)
    np.testing.assert_array_equal(X, before)  # the caller's data is only read
    assert all(np.isfinite(record["loss"]) for record in vae.history_)
    Z = vae.transform(X)
    assert Z.shape == (X.shape[0], params["n_components"] + params["n_info_components"])
    assert np.isfinite(Z).all()
    assert np.isfinite(vae.inverse_transform(Z)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # implausible bounds of 1-epoch critics
        assert np.isfinite(vae.score(X))


@pytest.fixture(scope="module")
def fitted_on_six():
    X = np.random.RandomState(1).rand(30, 6)
    return InfoMaxVAETransformer(n_components=2, n_info_components=1, hidden_layer_sizes=(8,),
                                 critic_hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                                 device="cpu").fit(X)


@PROFILE
@given(X=matrices())
def test_fitted_methods_work_or_name_the_problem(fitted_on_six, X):
    vae = fitted_on_six
    values = X.astype(np.float64)
    if not np.isfinite(values).all():  # checked first, as scikit-learn's check_array does
        for method in (vae.transform, vae.score, vae.kl_per_dimension):
            with pytest.raises(ValueError, match="NaN|infinity"):
                method(X)
        return
    if X.shape[1] != 6:
        for method in (vae.transform, vae.score, vae.kl_per_dimension):
            with pytest.raises(ValueError, match=f"X has {X.shape[1]} features"):
                method(X)
        return
    Z = vae.transform(X)
    assert np.isfinite(Z).all() and Z.dtype == (np.float32 if X.dtype == np.float32 else np.float64)
    assert np.isfinite(vae.kl_per_dimension(X)).all()
    if X.shape[0] < 2:
        with pytest.raises(ValueError, match="at least 2 samples"):
            vae.score(X)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert np.isfinite(vae.score(X))


# -- tiny samples: 2 to 10 rows at every alpha and bound ---------------------------------
@st.composite
def tiny_fits(draw):
    """Finite X of 2-10 rows and a fit of any alpha, bound and info codes on it."""
    n_rows = draw(st.integers(2, 10))
    X = np.random.RandomState(draw(st.integers(0, 2**16))).rand(n_rows, draw(st.integers(1, 6)))
    params = {**draw(parameters()), "precision": "float32",
              "alpha": draw(st.sampled_from([0.0, 1.0, 10.0]))}
    return X, params, draw(st.sampled_from(["fit", "partial_fit"]))


@PROFILE
@given(case=tiny_fits())
def test_tiny_samples_give_a_model_or_a_named_error(case):
    """The scoring critic, the held-out blocks and early stopping all split the rows: on 2
    rows (the fewest X may have) to 10, fit gives a usable model or the documented error,
    never an arithmetic exception.
    """
    X, params, method = case
    expected = expected_fit_error(X, params, method)
    if expected is not None:
        with pytest.raises(ValueError, match=expected):
            _fit(X, params, method)
        return
    vae = _fit(X, params, method)
    assert np.isfinite(vae.transform(X)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # implausible bounds of tiny critics
        assert np.isfinite(vae.score(X))
        assert np.isfinite(vae.mi_bounds(X).lower)
