"""CUDA-graph training steps: same training as eager steps, used only where safe.

Skipped without a CUDA GPU (CI has none); run on a GPU machine.
"""

import numpy as np
import pytest
import torch
from torch import nn

from skinfomax import InfoMaxVAETransformer
from skinfomax import _cuda_graphs as graphs
from skinfomax._networks import _rolled
from skinfomax._training import Engine

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# 240 rows in 7 batches of 34 or 35: two batch shapes, so two graphs.
SMALL = dict(hidden_layer_sizes=(32,), critic_hidden_layer_sizes=(32,), batch_size=32,
             max_iter=3, random_state=0, device="cuda")


def test_tensor_shift_rolls_like_roll():
    t = torch.arange(12.0).reshape(6, 2)
    for shift in range(1, 6):
        torch.testing.assert_close(_rolled(t, torch.tensor(shift)), t.roll(-shift, dims=0))
        torch.testing.assert_close(_rolled(t, shift), t.roll(-shift, dims=0))


@pytest.fixture
def captures(monkeypatch):
    """Counts graph captures and replays."""
    counts = {"captured": 0, "replayed": 0}
    original_init, original_call = graphs.GraphedStep.__init__, graphs.GraphedStep.__call__

    def init(self, *args):
        counts["captured"] += 1
        original_init(self, *args)

    def call(self, *args):
        counts["replayed"] += 1
        return original_call(self, *args)

    monkeypatch.setattr(graphs.GraphedStep, "__init__", init)
    monkeypatch.setattr(graphs.GraphedStep, "__call__", call)
    return counts


@requires_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_graphed_training_matches_eager_training(digits, captures, monkeypatch, precision):
    X, _ = digits
    graphed = InfoMaxVAETransformer(precision=precision, **SMALL).fit(X)
    # 21 steps: 3 eager warm-up steps per shape, the rest replays of 2 graphs.
    assert captures == {"captured": 2, "replayed": 21 - 6}
    assert graphed._engine._graphs is None  # graphs are released after fit
    monkeypatch.setattr(Engine, "_use_graphs", lambda self: False)
    eager = InfoMaxVAETransformer(precision=precision, **SMALL).fit(X)
    assert captures["captured"] == 2
    tol = 1e-4 if precision == "float32" else 2e-2
    for g, e in zip(graphed.history_, eager.history_):
        for key in ("reconstruction", "kl", "mi"):
            assert g[key] == pytest.approx(e[key], rel=tol, abs=tol)
    np.testing.assert_allclose(graphed.transform(X), eager.transform(X), rtol=tol, atol=tol)


@requires_cuda
def test_graphs_resume_with_warm_start_and_new_learning_rate(digits, captures):
    X, _ = digits
    vae = InfoMaxVAETransformer(warm_start=True, **SMALL).fit(X)
    before = [p.detach().clone() for p in vae.encoder_.parameters()]
    vae.set_params(learning_rate=1e-12, critic_learning_rate=1e-12).fit(X)
    # Graphs are captured afresh per fit, so the new (tiny) learning rate is honoured.
    assert captures["captured"] == 4
    for old, new in zip(before, vae.encoder_.parameters()):
        torch.testing.assert_close(old, new)


@requires_cuda
def test_float16_and_custom_modules_train_without_graphs(digits, captures):
    X, _ = digits
    InfoMaxVAETransformer(precision="float16", **SMALL).fit(X)
    decoder = lambda shape, n_z, n_c: nn.Linear(n_z + n_c, shape[0])  # noqa: E731
    vae = InfoMaxVAETransformer(decoder=decoder, **SMALL).fit(X)
    assert captures["captured"] == 0
    assert np.isfinite(vae.history_[-1]["loss"])


@requires_cuda
def test_failed_capture_falls_back_to_eager_with_a_warning(digits, monkeypatch):
    X, _ = digits

    def broken(*args):
        raise RuntimeError("capture not supported")

    monkeypatch.setattr(graphs.GraphedStep, "__init__", broken)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        vae = InfoMaxVAETransformer(**SMALL).fit(X)
    assert len(vae.history_) == 3 and np.isfinite(vae.history_[-1]["loss"])


@requires_cuda
def test_conv_network_trains_with_graphs(digits, captures):
    X, _ = digits  # 240 8x8 images in [0, 1]: 15 batches of 16, one shape
    vae = InfoMaxVAETransformer(
        architecture="conv", image_shape=(1, 8, 8), conv_channels=(4, 8), n_components=2,
        critic_hidden_layer_sizes=(8,), batch_size=16, max_iter=3, random_state=0,
        device="cuda",
    ).fit(X)
    assert captures == {"captured": 1, "replayed": 45 - 3}
    assert vae.history_[-1]["reconstruction"] < vae.history_[0]["reconstruction"]
