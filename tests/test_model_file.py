"""save / load: model files that round-trip, resume training, and refuse damage."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.exceptions import NotFittedError

from skinfomax import InfoMaxVAETransformer
from skinfomax import _model_file as model_file
from skinfomax._networks import build_mlp

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
LONG = os.environ.get("SKINFOMAX_TEST_PROFILE") == "long"
SMALL = dict(hidden_layer_sizes=(8,), critic_hidden_layer_sizes=(8,), max_iter=2, random_state=0)


@pytest.fixture(scope="module")
def data():
    X = np.random.RandomState(0).rand(40, 5)
    return X


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A fitted model (with info codes) and the file it was saved to."""
    model = InfoMaxVAETransformer(n_components=2, n_info_components=1, **SMALL).fit(data)
    path = tmp_path_factory.mktemp("model") / "vae.safetensors"
    model.save(path)
    return model, path


def _rewrite(path, out, edit_tensors=None, edit_document=None):
    """Re-write a valid model file after editing it (a fresh digest: only the content is wrong)."""
    tensors, document = model_file.read_model_file(path)
    if edit_tensors:
        edit_tensors(tensors)
    if edit_document:
        edit_document(document)
    document.pop("written_by")
    model_file.write_model_file(out, tensors, document)
    return out


def test_round_trip_keeps_outputs_parameters_and_fitted_attributes(saved, data):
    model, path = saved
    loaded = InfoMaxVAETransformer.load(path)
    np.testing.assert_array_equal(loaded.transform(data), model.transform(data))
    np.testing.assert_array_equal(loaded.inverse_transform(model.transform(data)),
                                  model.inverse_transform(model.transform(data)))
    assert loaded.score(data) == model.score(data)
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_ and loaded.n_iter_ == model.n_iter_
    np.testing.assert_array_equal(loaded.info_mean_, model.info_mean_)
    assert loaded.info_mean_.dtype == model.info_mean_.dtype
    assert (loaded.n_features_in_, loaded.batch_size_) == (model.n_features_in_, model.batch_size_)
    assert loaded.device_ == torch.device("cpu")


def test_round_trip_of_feature_names_random_state_instance_and_output_config(data, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(data, columns=[f"f{i}" for i in range(data.shape[1])])
    rng = np.random.RandomState(3)
    model = InfoMaxVAETransformer(**{**SMALL, "random_state": rng}).fit(frame)
    model.set_output(transform="pandas")
    model.save(tmp_path / "m.safetensors")
    loaded = InfoMaxVAETransformer.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    out = loaded.transform(frame)
    assert list(out.columns) == list(model.get_feature_names_out())
    saved_state, loaded_state = rng.get_state(), loaded.random_state.get_state()
    np.testing.assert_array_equal(saved_state[1], loaded_state[1])
    assert saved_state[2:] == loaded_state[2:]


@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_loaded_model_resumes_training_exactly(data, tmp_path, how):
    model = InfoMaxVAETransformer(**SMALL).fit(data)
    model.save(tmp_path / "m.safetensors")
    loaded = InfoMaxVAETransformer.load(tmp_path / "m.safetensors")
    fresh_optimizers = InfoMaxVAETransformer.load(tmp_path / "m.safetensors")
    fresh_optimizers._engine.vae_optimizer = fresh_optimizers._engine.critic_optimizer = None
    for est in (model, loaded, fresh_optimizers):
        if how == "warm_start":
            est.set_params(warm_start=True).fit(data)
        else:
            est.partial_fit(data)
    np.testing.assert_array_equal(loaded.transform(data), model.transform(data))
    assert loaded.history_ == model.history_
    # The check can fail: without the saved Adam moments the continuation differs.
    assert not np.array_equal(fresh_optimizers.transform(data), model.transform(data))


def test_loading_never_unpickles(saved, data, monkeypatch):
    model, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    np.testing.assert_array_equal(InfoMaxVAETransformer.load(path).transform(data),
                                  model.transform(data))


def test_every_flipped_byte_is_refused(data, tmp_path):
    model = InfoMaxVAETransformer(n_components=1, hidden_layer_sizes=(), critic_hidden_layer_sizes=(2,),
                                  max_iter=1, random_state=0).fit(data[:, :2])
    good = tmp_path / "good.safetensors"
    model.save(good)
    original = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    # Every byte under SKINFOMAX_TEST_PROFILE=long (16,440 of them: minutes on 2 shared cores);
    # otherwise the length prefix, the digest, the format version and every 29th byte.
    positions = set(range(16)) | set(range(0, len(original), 1 if LONG else 29))
    for marker in (b'"sha256"', b'"format_version"'):
        start = original.index(marker)
        positions |= set(range(start, start + len(marker) + 70))
    for position in sorted(positions):
        flipped = bytearray(original)
        flipped[position] ^= 0x01  # the smallest change: one bit
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match="not a usable skinfomax model file") as info:
            InfoMaxVAETransformer.load(bad)
        assert str(bad) in str(info.value), position


def test_truncated_and_padded_files_are_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    bad = tmp_path / "bad.safetensors"
    for content in (b"", data[:7], data[:8], data[: header_end - 1], data[:header_end],
                    data[:-1], data + b"\0"):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match="not a complete safetensors file"):
            InfoMaxVAETransformer.load(bad)
    with pytest.raises(FileNotFoundError, match="No model file"):
        InfoMaxVAETransformer.load(tmp_path / "missing.safetensors")


def test_future_format_version_is_refused_by_name(saved, tmp_path, monkeypatch):
    _, path = saved
    tensors, document = model_file.read_model_file(path)
    monkeypatch.setattr(model_file, "FORMAT_VERSION", model_file.FORMAT_VERSION + 1)
    model_file.write_model_file(tmp_path / "future.safetensors", tensors, document)
    monkeypatch.undo()
    future = model_file.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match=f"format version {future}, written by a newer "
                                         "skinfomax.*Upgrade"):
        InfoMaxVAETransformer.load(tmp_path / "future.safetensors")


def test_other_safetensors_files_and_mismatched_contents_are_refused(saved, data, tmp_path):
    _, path = saved
    save_file({"weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="without skinfomax's metadata"):
        InfoMaxVAETransformer.load(tmp_path / "other.safetensors")

    def drop_weight(tensors):
        del tensors["encoder.head.weight"]

    def widen_weight(tensors):
        tensors["decoder.0.weight"] = torch.zeros(9, 3)

    def bad_generator(tensors):
        tensors["rng.cpu"] = tensors["rng.cpu"][:10]

    for edit in (drop_weight, widen_weight, bad_generator):
        out = _rewrite(path, tmp_path / f"{edit.__name__}.safetensors", edit_tensors=edit)
        with pytest.raises(ValueError, match="passed its integrity check but does not describe"):
            InfoMaxVAETransformer.load(out)

    def negative_alpha(document):
        document["params"]["alpha"] = -1.0

    def other_estimator(document):
        document["estimator"] = "sklearn.decomposition.PCA"

    out = _rewrite(path, tmp_path / "alpha.safetensors", edit_document=negative_alpha)
    with pytest.raises(ValueError, match="alpha"):
        InfoMaxVAETransformer.load(out)
    out = _rewrite(path, tmp_path / "pca.safetensors", edit_document=other_estimator)
    with pytest.raises(ValueError, match="holds a 'sklearn.decomposition.PCA'"):
        InfoMaxVAETransformer.load(out)


def test_file_is_plain_safetensors_with_json_and_versions(saved):
    _, path = saved
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata()
        names = set(file.keys())
    document = json.loads(metadata["document"])
    assert metadata["format_version"] == "2"
    assert document["written_by"]["torch"] == torch.__version__
    assert {"encoder.head.weight", "likelihood.raw_log_var", "rng.cpu",
            "vae_optimizer.state.0.exp_avg_sq", "critic_optimizer.state.0.step",
            "score_critic.embed_codes.weight"} <= names


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_mapping_without_the_saved_device(saved, data, tmp_path):
    model, path = saved

    def on_gpu(document):
        document["engine"]["device"] = "cuda:7"

    out = _rewrite(path, tmp_path / "gpu.safetensors", edit_document=on_gpu)
    with pytest.warns(UserWarning, match="cuda:7, which is not available here; loading it on the CPU"):
        loaded = InfoMaxVAETransformer.load(out)
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.transform(data), model.transform(data))
    explicit = InfoMaxVAETransformer.load(out, device="cpu")
    assert explicit.device == "cpu" and explicit.device_ == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        InfoMaxVAETransformer.load(path, device="cuda")


@requires_cuda
def test_gpu_model_loads_on_cpu_and_resumes_on_gpu(data, tmp_path):
    model = InfoMaxVAETransformer(**{**SMALL, "device": "cuda"}).fit(data)
    model.save(tmp_path / "m.safetensors")
    on_cpu = InfoMaxVAETransformer.load(tmp_path / "m.safetensors", device="cpu")
    assert on_cpu.device_ == torch.device("cpu")
    np.testing.assert_allclose(on_cpu.transform(data), model.transform(data), rtol=1e-5, atol=1e-6)
    on_cpu.set_params(warm_start=True).fit(data)  # CPU streams start from the saved CPU state
    on_gpu = InfoMaxVAETransformer.load(tmp_path / "m.safetensors")
    assert on_gpu.device_.type == "cuda"
    for est in (model, on_gpu):
        est.set_params(warm_start=True).fit(data)
    np.testing.assert_allclose(on_gpu.transform(data), model.transform(data), rtol=1e-5, atol=1e-6)


def _encoder_factory(input_shape, n_components, n_info_components):
    from skinfomax._networks import Encoder

    return Encoder(build_mlp([input_shape[0], 6], activate_last=True), 6, n_components,
                   n_info_components)


def test_custom_networks_need_their_code_passed_to_load(data, tmp_path):
    decoder = build_mlp([2, 7, 5])
    model = InfoMaxVAETransformer(**{**SMALL, "encoder": _encoder_factory, "decoder": decoder})
    model.fit(data)
    path = tmp_path / "custom.safetensors"
    model.save(path)
    with pytest.raises(ValueError, match=r"custom encoder \(tests.test_model_file._encoder_factory\)"
                                         r".*pass encoder=<the same module or factory>"):
        InfoMaxVAETransformer.load(path, decoder=decoder)
    with pytest.raises(ValueError, match=r"custom decoder \(torch.nn.modules.container.Sequential\)"):
        InfoMaxVAETransformer.load(path, encoder=_encoder_factory)
    with pytest.raises(ValueError, match="built-in critic; do not pass critic="):
        InfoMaxVAETransformer.load(path, encoder=_encoder_factory, decoder=decoder,
                                   critic=_encoder_factory)
    with pytest.raises(ValueError, match="does not describe"):  # weights of another shape
        InfoMaxVAETransformer.load(path, encoder=_encoder_factory, decoder=build_mlp([2, 3, 5]))
    loaded = InfoMaxVAETransformer.load(path, encoder=_encoder_factory, decoder=decoder)
    np.testing.assert_array_equal(loaded.transform(data), model.transform(data))
    assert loaded.encoder is _encoder_factory and loaded.decoder is decoder


def test_save_needs_a_fitted_model_and_json_values(saved, tmp_path):
    model, _ = saved
    with pytest.raises(NotFittedError):
        InfoMaxVAETransformer().save(tmp_path / "x.safetensors")
    odd = pickle.loads(pickle.dumps(model)).set_params(random_state=np.random.default_rng(0))
    with pytest.raises(TypeError, match="parameter random_state is a Generator"):
        odd.save(tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


# -- files written by earlier versions ----------------------------------------------------
DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_format_1_files_written_before_the_modules_became_private_still_load(name, tmp_path):
    """tests/data holds files written by skinfomax at 49fdbb5, and what they gave then."""
    expected = np.load(os.path.join(DATA, "format1_expected.npz"))
    vae = InfoMaxVAETransformer.load(os.path.join(DATA, f"format1_{name}.safetensors"))
    X = expected["X"]
    # float32 networks: equal to rounding on another CPU, bit for bit on the one that wrote them.
    np.testing.assert_allclose(vae.transform(X), expected[f"{name}_codes"], rtol=1e-5, atol=1e-6)
    assert vae._engine.config.bound.estimator == "nwj"  # recorded as "mi_estimator" then
    vae.save(tmp_path / "again.safetensors")  # now under the public class name
    assert json.loads(_document(tmp_path / "again.safetensors"))["estimator"] == (
        "skinfomax.InfoMaxVAETransformer")
    again = InfoMaxVAETransformer.load(tmp_path / "again.safetensors")
    np.testing.assert_array_equal(again.transform(X), vae.transform(X))


def _document(path):
    with safe_open(str(path), framework="pt") as file:
        return file.metadata()["document"]
