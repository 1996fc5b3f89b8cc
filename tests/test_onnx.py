"""ONNX export: onnxruntime's outputs against transform's (torch), for each architecture,
dtype, a custom encoder and a pipeline; the errors that name the fix."""

import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from torch import nn

from skinfomax import Encoder, InfoMaxVAETransformer, register_onnx_converter

TOLERANCE = 1e-5  # float32 rounding of a small network
SMALL = {"n_components": 3, "hidden_layer_sizes": (16,), "critic_hidden_layer_sizes": (16,),
         "max_iter": 3, "n_threads": 1, "random_state": 0}


@pytest.fixture(scope="module")
def to_onnx():
    skl2onnx = pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxscript")  # torch.onnx.export's dependency
    register_onnx_converter()
    register_onnx_converter()  # idempotent
    return skl2onnx.to_onnx


@pytest.fixture(scope="module")
def run():
    ort = pytest.importorskip("onnxruntime")

    def run(model, X):
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: X})

    return run


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    # Fit on 200 rows, compare on 300 others.
    return X[:200], y[:200], X[1000:1300], y[1000:1300]


def assert_codes_match(vae, X_fit, X_test, to_onnx, run):
    (codes,) = run(to_onnx(vae, X_fit[:1]), X_test)
    expected = vae.transform(X_test)
    assert codes.dtype == expected.dtype
    assert codes.shape == expected.shape == (X_test.shape[0], vae.n_components_out_)
    assert np.abs(codes - expected).max() < TOLERANCE
    return codes


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_mlp_gaussian_matches_transform(data, to_onnx, run, dtype):
    X, _, X_test, _ = data
    vae = InfoMaxVAETransformer(**SMALL).fit(X)
    codes = assert_codes_match(vae, X.astype(dtype), X_test.astype(dtype), to_onnx, run)
    # As transform: float32 stays float32, integers come back as float64.
    assert codes.dtype == (np.float32 if dtype is np.float32 else np.float64)


def test_mlp_bernoulli_matches_transform(data, to_onnx, run):
    X, _, X_test, _ = data
    vae = InfoMaxVAETransformer(likelihood="bernoulli", **SMALL).fit(X / 16)
    assert vae._engine.units is None  # no standardisation in the graph
    assert_codes_match(vae, (X / 16).astype(np.float32), (X_test / 16).astype(np.float32),
                       to_onnx, run)


def test_info_components_follow_z_means(data, to_onnx, run):
    X, _, X_test, _ = data
    vae = InfoMaxVAETransformer(n_info_components=2, **SMALL).fit(X)
    codes = assert_codes_match(vae, X.astype(np.float32), X_test.astype(np.float32), to_onnx,
                               run)
    assert codes.shape[1] == 5


def test_conv_matches_transform_on_rows_and_images(data, to_onnx, run):
    X, _, X_test, _ = data
    vae = InfoMaxVAETransformer(architecture="conv", image_shape=(1, 8, 8), conv_channels=(4, 8),
                                n_info_components=1, **SMALL).fit(X)
    assert any(isinstance(m, nn.BatchNorm2d) for m in vae.encoder_.modules())
    X32, X_test32 = X.astype(np.float32), X_test.astype(np.float32)
    flat = assert_codes_match(vae, X32, X_test32, to_onnx, run)
    images = X_test32.reshape(-1, 1, 8, 8)
    from_images = assert_codes_match(vae, X32.reshape(-1, 1, 8, 8), images, to_onnx, run)
    np.testing.assert_array_equal(flat, from_images)


def test_pipeline_with_classifier(data, to_onnx, run):
    X, y, X_test, _ = data
    pipe = make_pipeline(MinMaxScaler(), InfoMaxVAETransformer(**SMALL),
                         LogisticRegression(max_iter=300)).fit(X, y)
    model = to_onnx(pipe, X[:1].astype(np.float32),
                    options={id(pipe[-1]): {"zipmap": False}})
    labels, probabilities = run(model, X_test.astype(np.float32))
    np.testing.assert_array_equal(labels, pipe.predict(X_test))
    assert np.abs(probabilities - pipe.predict_proba(X_test)).max() < TOLERANCE


def test_custom_encoder_from_known_layers_converts(data, to_onnx, run):
    X, _, X_test, _ = data

    def encoder(input_shape, n_components, n_info_components):
        body = nn.Sequential(nn.Linear(input_shape[0], 12), nn.Tanh(), nn.Dropout(0.1),
                             nn.Sequential(nn.Linear(12, 8), nn.LeakyReLU(0.2)),
                             nn.BatchNorm1d(8), nn.ELU())
        return Encoder(body, 8, n_components, n_info_components)

    vae = InfoMaxVAETransformer(encoder=encoder, **SMALL).fit(X)
    assert_codes_match(vae, X.astype(np.float32), X_test.astype(np.float32), to_onnx, run)


class _GatedEncoder(nn.Module):
    """Not an nn.Sequential: two branches multiplied together, then a head."""

    def __init__(self, input_shape, n_components, n_info_components):
        super().__init__()
        self.value, self.gate = nn.Linear(input_shape[0], 12), nn.Linear(input_shape[0], 12)
        self.head = nn.Linear(12, 2 * n_components + n_info_components)
        self.sizes = (n_components, n_components, n_info_components)

    def forward(self, x):
        hidden = nn.functional.gelu(self.value(x)) * torch.sigmoid(self.gate(x))
        return self.head(hidden).split(self.sizes, dim=1)


def test_custom_encoder_with_own_forward_converts(data, to_onnx, run):
    X, _, X_test, _ = data
    vae = InfoMaxVAETransformer(encoder=_GatedEncoder, n_info_components=1, **SMALL).fit(X)
    vae.encoder_.train()
    model = to_onnx(vae, X[:1].astype(np.float32))
    assert vae.encoder_.training  # exported from a copy: the fitted encoder is untouched
    (codes,) = run(model, X_test.astype(np.float32))
    expected = vae.transform(X_test.astype(np.float32))
    assert codes.shape == expected.shape == (X_test.shape[0], 4)
    assert np.abs(codes - expected).max() < TOLERANCE


def test_target_opset_is_followed(data, to_onnx, run):
    X, _, X_test, _ = data
    vae = InfoMaxVAETransformer(**SMALL).fit(X)
    model = to_onnx(vae, X[:1].astype(np.float32), target_opset=18)
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    (codes,) = run(model, X_test.astype(np.float32))
    assert np.abs(codes - vae.transform(X_test.astype(np.float32))).max() < TOLERANCE


class _BranchingEncoder(nn.Module):
    """Branches in Python on its input's values, which torch.export cannot trace."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 6)

    def forward(self, x):
        if x.sum() < 0:
            x = -x
        mean, log_var = self.linear(x).chunk(2, dim=1)
        return mean, log_var, x[:, :0]


def test_encoder_torch_cannot_export_is_refused_by_name(data, to_onnx):
    X = data[0]
    vae = InfoMaxVAETransformer(encoder=_BranchingEncoder(), **SMALL).fit(X)
    with pytest.raises(TypeError, match=r"encoder _BranchingEncoder: torch\.onnx\.export failed"):
        to_onnx(vae, X[:1].astype(np.float32))


def test_unfitted_is_refused(to_onnx):
    with pytest.raises(NotFittedError, match="not fitted"):
        to_onnx(InfoMaxVAETransformer(), np.zeros((1, 4), np.float32))


def test_input_shape_is_checked(data, to_onnx):
    X = data[0]
    vae = InfoMaxVAETransformer(**SMALL).fit(X)
    with pytest.raises(ValueError, match="fitted on 64"):
        to_onnx(vae, X[:1, :10].astype(np.float32))
    with pytest.raises(ValueError, match=r"needs a transformer fitted with image_shape"):
        to_onnx(vae, X[:1].reshape(1, 1, 8, 8).astype(np.float32))


def test_reduced_precision_warns(data, to_onnx):
    X = data[0]
    vae = InfoMaxVAETransformer(precision="bfloat16", **{**SMALL, "max_iter": 1}).fit(X)
    with pytest.warns(UserWarning, match="precision='bfloat16'"):
        to_onnx(vae, X[:1].astype(np.float32))


def test_missing_skl2onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r'pip install "skinfomax\[onnx\]"'):
        register_onnx_converter()
