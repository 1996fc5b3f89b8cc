"""Precision, compile, partial_fit and streamed (memmap) input: behaviour only, no timing."""

import pickle

import numpy as np
import pytest
import torch


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def float32_reference(digits):
    from skinfomax import InfoMaxVAETransformer

    from .conftest import TINY

    X, _ = digits
    return InfoMaxVAETransformer(**{**TINY, "max_iter": 2, "precision": "float32"}).fit(
        X.astype(np.float32))


def test_bfloat16_precision_trains_like_float32_and_keeps_float32_outputs(
    tiny_vae, digits, float32_reference
):
    X, _ = digits
    X = X.astype(np.float32)
    vae = tiny_vae(precision="bfloat16", max_iter=2).fit(X)
    assert next(vae.encoder_.parameters()).dtype == torch.float32
    # Same seed, same batches: only bfloat16 rounding apart (measured: 0.2% and 1.4e-3).
    for key in ("reconstruction", "kl", "mi"):
        assert vae.history_[0][key] == pytest.approx(float32_reference.history_[0][key], rel=1e-2)
    Z = vae.transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, float32_reference.transform(X), atol=1e-2)


def test_auto_precision_trains_in_bf16_only_where_the_cpu_has_bf16_units(
    tiny_vae, digits, float32_reference, monkeypatch
):
    from skinfomax import _utils

    X = digits[0].astype(np.float32)
    for has_units in (False, True):
        _utils.bf16_units.cache_clear()
        for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            monkeypatch.setattr(torch.cpu, check, lambda has_units=has_units: has_units)
        vae = tiny_vae(precision="auto", max_iter=2, device="cpu").fit(X)
        same = vae.history_ == float32_reference.history_
        assert same is (not has_units)  # without bf16 units, float32 bit for bit
    _utils.bf16_units.cache_clear()
    bf16 = tiny_vae(precision="bfloat16", max_iter=2, device="cpu").fit(X)
    assert vae.history_ == bf16.history_  # with units: bfloat16's training, bit for bit
    # Evaluation runs in float32: the codes are those of the same weights in float32.
    Z = vae.transform(X)
    with torch.no_grad():  # the encoder by hand, outside any autocast
        by_hand = vae.encoder_(vae._engine.rows(X).tensor)[0].numpy()
    np.testing.assert_allclose(Z, by_hand, rtol=1e-6, atol=1e-6)
    assert np.abs(Z - bf16.transform(X)).max() > 1e-4  # bfloat16 evaluation rounds


def test_float16_precision_uses_a_grad_scaler(tiny_vae, digits, float32_reference):
    X, _ = digits
    vae = tiny_vae(precision="float16", max_iter=1, device="cpu").fit(X.astype(np.float32))
    assert vae._engine.scaler is not None
    # The first epoch's terms come from the initial weights (measured: 1e-4 apart).
    for key in ("reconstruction", "kl", "mi"):
        assert vae.history_[0][key] == pytest.approx(float32_reference.history_[0][key], rel=1e-2)


def test_compiled_fit_pickles_and_failures_fall_back(tiny_vae, digits, monkeypatch):
    X, _ = digits
    vae = tiny_vae(max_iter=1)
    vae.fit(X)  # eager; then pretend compiling fails
    monkeypatch.setattr(torch, "compile", lambda f, **kw: _raise)
    vae.set_params(compile=True, warm_start=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        vae.fit(X)
    assert vae.n_iter_ == 2 and vae._engine._compile_failed
    # A compiled function held by the engine is dropped from the pickle.
    vae._engine._compiled = lambda *a: None
    clone = pickle.loads(pickle.dumps(vae))
    assert clone._engine._compiled is None
    np.testing.assert_array_equal(clone.transform(X), vae.transform(X))


def _raise(*args, **kwargs):
    raise RuntimeError("no compiler here")


def test_partial_fit_on_the_same_data_equals_fit(tiny_vae, digits):
    X, _ = digits
    full = tiny_vae(max_iter=3).fit(X)
    parts = tiny_vae()
    for _ in range(3):
        parts.partial_fit(X)
    assert parts.n_iter_ == 3
    assert parts.history_ == full.history_
    np.testing.assert_array_equal(parts.transform(X), full.transform(X))
    # The critic trained alongside followed the same path (score's critic is fit's own).
    for p, q in zip(parts._engine.critic.parameters(), full._engine.critic.parameters()):
        assert torch.equal(p, q)


def test_partial_fit_chunks_and_errors(tiny_vae, digits):
    X, _ = digits
    vae = tiny_vae()
    for chunk in np.array_split(X, 3):
        vae.partial_fit(chunk)
    assert vae.n_iter_ == 3 and vae.transform(X).shape == (len(X), 2)
    with pytest.raises(ValueError, match="features"):
        vae.partial_fit(X[:, :10])
    with pytest.raises(ValueError, match="early_stopping"):
        tiny_vae(early_stopping=True).partial_fit(X)


def test_short_last_chunk_is_trained_with_a_clipped_batch(tiny_vae, digits):
    X, _ = digits
    chunks = [X[:100], X[100:110]]  # batch_size=64: the last chunk has 10 rows
    streamed = tiny_vae(batch_size=64)
    streamed.partial_fit(chunks[0])
    with pytest.warns(UserWarning, match="batch_size=64 is larger than the 10 training samples; "
                                         "it is clipped to 10"):
        streamed.partial_fit(chunks[1])
    assert streamed.n_iter_ == 2 and streamed.batch_size_ == 10
    # The clipped call is the call with batch_size=10: same streams, same weights after it.
    explicit = tiny_vae(batch_size=64)
    explicit.partial_fit(chunks[0])
    explicit.set_params(batch_size=10).partial_fit(chunks[1])
    assert streamed.history_ == explicit.history_
    np.testing.assert_array_equal(streamed.transform(X), explicit.transform(X))
    with pytest.raises(ValueError, match="minimum of 2"):
        streamed.partial_fit(X[:1])
    assert streamed.n_iter_ == 2


def test_fit_clips_batch_size_like_partial_fit(tiny_vae, digits):
    X, _ = digits
    with pytest.warns(UserWarning, match="batch_size=1000 is larger than the 240"):
        clipped = tiny_vae(batch_size=1000).fit(X)
    whole = tiny_vae(batch_size=240).fit(X)
    assert clipped.batch_size_ == 240 and clipped.history_ == whole.history_
    # With early stopping the training part is what is clipped to.
    with pytest.warns(UserWarning, match="larger than the 216 training samples"):
        tiny_vae(batch_size=1000, early_stopping=True, max_iter=1).fit(X)


def test_memmap_input_is_streamed_and_matches_in_memory(tiny_vae, digits, tmp_path):
    X, _ = digits
    X = X.astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_map = np.load(path, mmap_mode="r")  # read-only: a resident copy would be needed
    assert isinstance(X_map, np.memmap)
    a = tiny_vae().fit(X_map)
    b = tiny_vae().fit(X)
    assert a.history_ == b.history_
    np.testing.assert_array_equal(a.transform(X_map), b.transform(X))
    assert a.score(X_map) == b.score(X)


def test_mi_bounds_streams_a_memmap_and_matches_in_memory(tiny_vae, digits, tmp_path,
                                                         monkeypatch):
    from skinfomax import _units

    X, _ = digits
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    vae = tiny_vae().fit(X)
    in_memory = vae.mi_bounds(X.astype(np.float32))
    streamed = []
    rows = _units.Rows.__init__

    def recorded(self, X, device, stream=False, *args, **kwargs):
        streamed.append(stream)
        rows(self, X, device, stream, *args, **kwargs)

    monkeypatch.setattr(_units.Rows, "__init__", recorded)
    assert vae.mi_bounds(X_map) == in_memory
    assert streamed == [True, True]  # the held-out bound's batches, then the rate's chunks


def test_partial_fit_chunks_beyond_the_first_chunks_units_train_without_swings(tiny_vae):
    """A first chunk in which a pixel is zero but for one 1/16 gives that pixel a scale of
    1/160; later chunks, where it reaches 1, came 160 scales from the centre and their
    losses were 16 times the first chunk's. The units now widen to each chunk's spread.
    """
    from sklearn.datasets import load_digits

    X = load_digits().data / 16
    pixel = X[:, 13]
    first = np.r_[np.flatnonzero(pixel == 0)[:127], np.flatnonzero(pixel == 1 / 16)[:1]]
    rest = np.random.RandomState(0).permutation(np.setdiff1d(np.arange(len(X)), first))
    chunks = [X[first], *np.array_split(X[rest[:512]], 4)]
    vae = tiny_vae(n_components=2)
    for _ in range(5):
        for chunk in chunks:
            vae.partial_fit(chunk)
    losses = np.array([record["loss"] for record in vae.history_]).reshape(5, 5)
    assert losses.max() < 1.5 * losses[0, 0]  # no chunk far above the first one
    assert losses[-1].mean() < 0.75 * losses[0].mean()  # and the stream goes on learning
    units = vae._engine.units  # every value sent lies within the units' reach
    assert (np.abs(X[np.r_[first, rest[:512]]] - units.center) <= 10 * units.scale).all()


def test_threads_restored_after_partial_fit(tiny_vae, digits):
    X, _ = digits
    previous = torch.get_num_threads()
    torch.set_num_threads(3)  # differs from n_threads whatever this machine has
    try:
        tiny_vae(n_threads=1).partial_fit(X)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(previous)


@requires_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_cuda_precisions_and_fused_adam(tiny_vae, digits, precision):
    X, _ = digits
    vae = tiny_vae(device="cuda", precision=precision, max_iter=2).fit(X)
    assert vae.device_.type == "cuda"
    assert vae._engine.vae_optimizer.defaults["fused"]
    assert np.isfinite(vae.history_[-1]["loss"])
