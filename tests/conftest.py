import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from skinfomax import InfoMaxVAETransformer

TINY = dict(hidden_layer_sizes=(16,), critic_hidden_layer_sizes=(16,), max_iter=3, random_state=0)


def small_vae(**params):
    """TINY with two components and batches of 50."""
    return InfoMaxVAETransformer(**{**TINY, "n_components": 2, "batch_size": 50, **params})


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


def _frozen(value, seen):
    """A deep copy of ``value`` that compares by value: module weights, optimiser state, arrays."""
    if id(value) in seen:  # a cycle: compared where it was first met
        return ("seen", type(value).__name__)
    if isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):
        return (type(value), _frozen(value.state_dict(), seen))
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _frozen(v, seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value), [_frozen(v, seen) for v in value])
    if type(value).__module__.startswith("skinfomax") and hasattr(value, "__dict__"):
        seen.add(id(value))  # the engine and anything else of ours: every attribute
        return (type(value), _frozen(vars(value), seen))
    return copy.deepcopy(value)


def _assert_same(before, after, path):
    assert type(before) is type(after), f"{path}: {type(before)} became {type(after)}"
    if isinstance(before, torch.Tensor):
        assert before.shape == after.shape and torch.equal(before, after), f"{path} changed"
    elif isinstance(before, np.ndarray):
        np.testing.assert_array_equal(before, after, err_msg=f"{path} changed")
    elif isinstance(before, dict):
        assert before.keys() == after.keys(), f"{path}: keys {before.keys()} became {after.keys()}"
        for key in before:
            _assert_same(before[key], after[key], f"{path}[{key!r}]")
    elif isinstance(before, (tuple, list)):
        assert len(before) == len(after), f"{path}: length changed"
        for i, (b, a) in enumerate(zip(before, after)):
            _assert_same(b, a, f"{path}[{i}]")
    else:
        assert before == after, f"{path}: {before!r} became {after!r}"


def snapshot(est):
    """What a failed call must leave unchanged: every attribute's value and transform's output."""
    state = _frozen(vars(est), set())
    out = est.transform(np.zeros((2, est.n_features_in_))) if hasattr(est, "n_features_in_") else None
    return state, out


def assert_unchanged(est, before):
    """Assert that ``est`` still matches its :func:`snapshot` ``before``, value by value."""
    after = snapshot(est)
    _assert_same(before[0], after[0], type(est).__name__)
    np.testing.assert_array_equal(before[1], after[1])
