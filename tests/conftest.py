import numpy as np
import pytest
from sklearn.datasets import load_digits

from skinfomax import InfoMaxVAETransformer

TINY = dict(hidden_layer_sizes=(16,), critic_hidden_layer_sizes=(16,), max_iter=3, random_state=0)


@pytest.fixture(scope="session")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:240] / 16.0, y[:240]


@pytest.fixture
def tiny_vae():
    """A small, quick estimator; tests override what they need."""
    return lambda **kw: InfoMaxVAETransformer(**{**TINY, **kw})


@pytest.fixture(scope="session")
def fitted(digits):
    X, _ = digits
    return InfoMaxVAETransformer(n_components=3, n_info_components=1, **TINY).fit(X)


def snapshot(est):
    """What a failed call must leave unchanged: attributes and transform output."""
    keys = sorted(vars(est))
    out = est.transform(np.zeros((2, est.n_features_in_))) if hasattr(est, "_engine") else None
    return keys, out
