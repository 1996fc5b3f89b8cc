"""The convolutional InfoMax VAE: image shapes, masks, traversals, custom modules."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from skinfomax import InfoMaxVAETransformer
from skinfomax._networks import ConvDecoder, build_conv_networks, conv_output_size
from skinfomax._networks import Critic, Encoder, build_mlp

from .conftest import assert_unchanged, snapshot

TINY_CONV = dict(
    n_components=2,
    n_info_components=1,
    architecture="conv",
    conv_channels=(4, 8),
    critic_hidden_layer_sizes=(8,),
    max_iter=2,
    random_state=0,
    n_threads=1,  # small convolutions gain nothing from more threads on a busy machine
    device="cpu",  # bit-for-bit comparisons below hold on the CPU (cuDNN picks algorithms)
)


def images(n, shape, seed=0):
    return np.random.RandomState(seed).rand(n, *shape).astype(np.float32)


@pytest.fixture(scope="module")
def digit_images(digits):
    X, y = digits
    return X.reshape(-1, 1, 8, 8), y


@pytest.fixture(scope="module")
def conv_fitted(digit_images):
    X, _ = digit_images
    return InfoMaxVAETransformer(image_shape=(1, 8, 8), **TINY_CONV).fit(X)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 13, 17), (1, 28, 28), (3, 48, 48), (2, 5, 3)])
def test_any_image_size_round_trips(shape):
    X = images(12, shape)
    vae = InfoMaxVAETransformer(image_shape=shape, **{**TINY_CONV, "max_iter": 1}).fit(X)
    n_features = int(np.prod(shape))
    assert vae.n_features_in_ == n_features
    Z = vae.transform(X.reshape(12, -1))
    assert Z.shape == (12, 3) and np.isfinite(Z).all()
    assert vae.inverse_transform(Z).shape == (12, n_features)
    assert vae.reconstruct(X).shape == X.shape


@pytest.mark.parametrize("height, width", [(28, 28), (48, 48), (13, 17), (1, 1), (7, 64)])
@pytest.mark.parametrize("n_layers", [1, 3])
def test_decoder_reaches_exactly_the_image_size(height, width, n_layers):
    # Each stride-2 conv halves a side rounding up; the decoder doubles and crops.
    assert conv_output_size(height, n_layers) == -(-height // 2**n_layers)
    decoder = ConvDecoder(5, (2, height, width), (8,) * n_layers)
    assert decoder(torch.zeros(3, 5)).shape == (3, 2 * height * width)


def test_default_layout_follows_the_keras_design():
    encoder, decoder, critic = build_conv_networks((3, 48, 48), 99, 1, (64, 128, 256), (256, 256))
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules()) == 2
    deconvs = [m for m in decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [d.out_channels for d in deconvs] == [128, 64, 3]
    # The critic's x extractor is convolutional and its size does not grow with the image.
    assert any(isinstance(m, nn.Conv2d) for m in critic.embed_x.modules())
    _, _, big_critic = build_conv_networks((3, 96, 96), 99, 1, (64, 128, 256), (256, 256))
    n_params = [sum(p.numel() for p in c.parameters()) for c in (critic, big_critic)]
    assert n_params[0] == n_params[1] < 3 * 48 * 48 * 256


def test_4d_and_flat_input_give_the_same_model(digit_images, conv_fitted):
    X, _ = digit_images
    flat = InfoMaxVAETransformer(image_shape=(1, 8, 8), **TINY_CONV).fit(X.reshape(len(X), -1))
    np.testing.assert_array_equal(flat.transform(X), conv_fitted.transform(X))
    np.testing.assert_array_equal(
        conv_fitted.transform(X), conv_fitted.transform(X.reshape(len(X), -1))
    )


def test_transform_is_deterministic_and_batch_invariant_with_batchnorm(conv_fitted, digit_images):
    X, _ = digit_images
    bn = [m for m in conv_fitted.encoder_.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and bn[0].running_mean.abs().sum() > 0  # trained statistics are in use
    Z = conv_fitted.transform(X)
    np.testing.assert_array_equal(Z, conv_fitted.transform(X))
    np.testing.assert_array_equal(conv_fitted.transform(X[7:8]), Z[7:8])
    np.testing.assert_array_equal(conv_fitted.transform(X[::-1])[::-1], Z)


def test_conv_training_improves_reconstruction(digit_images):
    X, _ = digit_images
    vae = InfoMaxVAETransformer(image_shape=(1, 8, 8), **{**TINY_CONV, "max_iter": 8}).fit(X)
    first, last = vae.history_[0]["reconstruction"], vae.history_[-1]["reconstruction"]
    assert last < first


def test_conv_warm_start_continues_and_keeps_the_image_shape(conv_fitted, digit_images):
    X, _ = digit_images
    est = clone(conv_fitted).set_params(warm_start=True).fit(X)
    est.fit(X)
    assert est.n_iter_ == 4 and [r["epoch"] for r in est.history_] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="image_shape and conv_channels must stay"):
        est.set_params(image_shape=(1, 4, 16)).fit(X.reshape(len(X), -1))
    assert est.n_iter_ == 4


def test_conv_in_a_pipeline_and_pickle(conv_fitted, digit_images):
    X, _ = digit_images
    flat = X.reshape(len(X), -1)
    pipe = make_pipeline(FunctionTransformer(), clone(conv_fitted)).fit(flat)
    np.testing.assert_array_equal(pipe.transform(flat), conv_fitted.transform(X))
    restored = pickle.loads(pickle.dumps(conv_fitted))
    np.testing.assert_array_equal(restored.transform(X), conv_fitted.transform(X))
    np.testing.assert_array_equal(restored.info_mean_, conv_fitted.info_mean_)


# -- masks and traversals ------------------------------------------------------------
def test_reconstruct_masks_codes_with_their_prior_mean(conv_fitted, digit_images):
    X, _ = digit_images
    Z = conv_fitted.transform(X)
    assert conv_fitted.info_mean_.shape == (1,)
    np.testing.assert_allclose(conv_fitted.info_mean_, Z[:, 2].mean(), rtol=1e-5)
    decode = lambda codes: conv_fitted.inverse_transform(codes).reshape(X.shape)  # noqa: E731
    np.testing.assert_array_equal(conv_fitted.reconstruct(X), decode(Z))
    z_only = Z.copy()
    z_only[:, 2] = conv_fitted.info_mean_
    np.testing.assert_array_equal(conv_fitted.reconstruct(X, keep="z"), decode(z_only))
    c_only = Z.copy()
    c_only[:, :2] = 0.0
    np.testing.assert_array_equal(conv_fitted.reconstruct(X, keep="c"), decode(c_only))
    # Flat in, flat out.
    assert conv_fitted.reconstruct(X.reshape(len(X), -1), keep="c").shape == (len(X), 64)
    with pytest.raises(ValueError, match="keep must be"):
        conv_fitted.reconstruct(X, keep="zc")


@pytest.mark.parametrize("component, column", [("z1", 1), ("c0", 2), (2, 2), ("infomaxvaetransformer_z0", 0)])
def test_latent_traversal_sweeps_one_code(conv_fitted, digit_images, component, column):
    X, _ = digit_images
    values = np.linspace(-2, 2, 5)
    out = conv_fitted.latent_traversal(X[3], component, values)
    assert out.shape == (5, 1, 8, 8)
    codes = np.repeat(conv_fitted.transform(X[3:4]), 5, axis=0)
    codes[:, column] = values
    np.testing.assert_allclose(out.reshape(5, -1), conv_fitted.inverse_transform(codes), rtol=1e-6)
    assert not np.allclose(out[0], out[-1])  # the sweep changes the image
    flat = conv_fitted.latent_traversal(X[3].ravel(), component, values)
    np.testing.assert_array_equal(flat, out.reshape(5, -1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(component="c1", values=[0.0]), "component='c1' names no latent code"),
        (dict(component=3, values=[0.0]), "names no latent code"),
        (dict(component="w0", values=[0.0]), "names no latent code"),
        (dict(component="z0", values=[[0.0, 1.0]]), "1-D"),
    ],
)
def test_latent_traversal_errors(conv_fitted, digit_images, kwargs, match):
    X, _ = digit_images
    with pytest.raises(ValueError, match=match):
        conv_fitted.latent_traversal(X[0], **kwargs)
    with pytest.raises(ValueError, match="one sample; x has 2 rows"):
        conv_fitted.latent_traversal(X[:2], "z0", [0.0])


# -- shape errors, before anything changes -------------------------------------------------
@pytest.mark.parametrize(
    "params, X_shape, error, match",
    [
        (dict(image_shape=(1, 8, 7)), (20, 64), ValueError, r"image_shape=\(1, 8, 7\) has 56 values"),
        (dict(image_shape=None), (20, 64), ValueError, "architecture='conv' needs image_shape"),
        (dict(image_shape=(1, 8)), (20, 64), ValueError, "three positive integers"),
        (dict(image_shape=(1, 8, 8)), (20, 1, 4, 16), ValueError, r"images of shape \(1, 4, 16\)"),
        (dict(image_shape=(1, 8, 8), conv_channels=()), (20, 64), ValueError, "conv_channels"),
        (dict(architecture="mlp", image_shape=None), (20, 1, 8, 8), ValueError, "needs image_shape"),
    ],
)
def test_bad_image_shapes_are_clear_and_change_nothing(conv_fitted, params, X_shape, error, match):
    est = pickle.loads(pickle.dumps(conv_fitted))
    est.set_params(**params)  # a parameter change alone; the failing fit must add none
    before = snapshot(est)
    with pytest.raises(error, match=match):
        est.fit(images(20, X_shape[1:]))
    assert_unchanged(est, before)


def test_4d_transform_input_must_match_the_fitted_shape(conv_fitted):
    with pytest.raises(ValueError, match=r"images of shape \(1, 4, 16\)"):
        conv_fitted.transform(images(3, (1, 4, 16)))


# -- custom modules ------------------------------------------------------------------
class FlatEncoder(nn.Module):
    def __init__(self, n_features, n_z, n_c):
        super().__init__()
        self.net = Encoder(build_mlp([n_features, 16], activate_last=True), 16, n_z, n_c)

    def forward(self, x):
        return self.net(x)


def mlp_critic(input_shape, n_z, n_c):
    return Critic(nn.Linear(int(np.prod(input_shape)), 8), n_z + n_c, 8)


def test_custom_modules_and_factories_are_used_and_never_mutated(digit_images):
    X, _ = digit_images
    encoder = FlatEncoder(64, 2, 1)
    weights = copy.deepcopy(encoder.state_dict())
    calls = []

    def decoder_factory(input_shape, n_z, n_c):
        calls.append((input_shape, n_z, n_c))
        return nn.Sequential(nn.Linear(n_z + n_c, 64))

    vae = InfoMaxVAETransformer(
        image_shape=(1, 8, 8), encoder=encoder, decoder=decoder_factory, critic=mlp_critic,
        **{**TINY_CONV, "max_iter": 3},
    ).fit(X)
    assert calls == [((1, 8, 8), 2, 1)]
    assert isinstance(vae.encoder_, FlatEncoder) and vae.encoder_ is not encoder
    assert isinstance(vae.decoder_, nn.Sequential)
    assert not any(isinstance(m, nn.Conv2d) for m in vae.critic_.modules())
    # The caller's module is untouched; the fitted copy was trained.
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(value, weights[name])
    assert not torch.equal(vae.encoder_.net.head.weight, encoder.net.head.weight)
    assert vae.transform(X).shape == (len(X), 3)
    # clone keeps the custom parameters; a refit of the clone reproduces the fit.
    np.testing.assert_array_equal(clone(vae).fit(X).transform(X), vae.transform(X))


def test_custom_modules_work_with_the_mlp_architecture(digits):
    X, _ = digits
    vae = InfoMaxVAETransformer(
        n_components=2, n_info_components=1, critic=mlp_critic, max_iter=1,
        hidden_layer_sizes=(8,), random_state=0,
    ).fit(X)
    assert isinstance(vae.critic_.embed_x, nn.Linear) and vae.critic_.embed_x.out_features == 8


class NoTuple(nn.Module):
    def forward(self, x):
        return x[:, :5]


class BadPairs(Critic):
    def joint_and_shifted(self, x, codes, shift):
        return self(x, codes)[:1], self(x, codes)


class MissingMethods(nn.Module):
    def forward(self, x, codes):
        return x.sum(1)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(encoder=FlatEncoder(64, 3, 1)), ValueError, r"encoder must return z_mean of shape \(2, 2\)"),
        (dict(encoder=FlatEncoder(64, 2, 0)), ValueError, r"encoder must return c of shape \(2, 1\)"),
        (dict(encoder=NoTuple()), ValueError, r"tuple \(z_mean, z_log_var, c\)"),
        (dict(encoder=lambda *a: FlatEncoder(63, 2, 1)), ValueError, "encoder fails on inputs"),
        (dict(decoder=nn.Linear(3, 60)), ValueError, r"decoder must return flat output of shape \(2, 64\)"),
        (dict(decoder=nn.Linear(4, 64)), ValueError, "decoder fails on codes"),
        (dict(critic=MissingMethods()), TypeError, "joint_and_shifted"),
        (dict(critic=BadPairs(nn.Linear(64, 8), 3, 8)), ValueError, r"joint_and_shifted must return scores of shape \(2,\)"),
        (dict(critic=Critic(nn.Linear(64, 8), 4, 8)), ValueError, "critic fails"),
        (dict(decoder=lambda *a: "not a module"), TypeError, "decoder= must be a torch.nn.Module"),
        (dict(critic="critic"), ValueError, "critic"),
    ],
)
def test_custom_modules_that_do_not_fit_are_named(conv_fitted, digit_images, params, error, match):
    X, _ = digit_images
    est = pickle.loads(pickle.dumps(conv_fitted))
    est.set_params(**params)  # a parameter change alone; the failing fit must add none
    before = snapshot(est)
    with pytest.raises(error, match=match):
        est.fit(X)
    assert_unchanged(est, before)


def test_fresh_critic_keeps_the_conv_architecture(conv_fitted, digit_images, monkeypatch):
    """refit_critic re-initialises a copy of the trained (conv) critic, not an MLP over pixels."""
    import skinfomax._critics as training

    X, _ = digit_images
    before = copy.deepcopy(conv_fitted.critic_.state_dict())
    seen = []
    real_train_critics = training.train_critics

    def spy(stacks, *args, **kwargs):
        seen.extend(stack.critic for stack in stacks)
        return real_train_critics(stacks, *args, **kwargs)

    monkeypatch.setattr(training, "train_critics", spy)
    bounds = conv_fitted.mi_bounds(X, refit_critic=True, refit_max_iter=2)
    assert np.isfinite(bounds.lower)
    (fresh,) = seen
    assert fresh is not conv_fitted.critic_
    assert repr(fresh) == repr(conv_fitted.critic_)  # same layers
    assert not torch.equal(fresh.embed_codes.weight, conv_fitted.critic_.embed_codes.weight)
    for name, tensor in conv_fitted.critic_.state_dict().items():
        assert torch.equal(tensor, before[name]), name  # trained critic untouched
