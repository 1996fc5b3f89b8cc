"""Same seed, same model: across processes and pickles, and the caller's torch state left alone."""

import hashlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch


from .conftest import small_vae


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


@pytest.mark.slow
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
