"""The scikit-learn face of the InfoMax VAE: parameters to an engine (``_training``), every
input validated before anything changes, results back to numpy.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections import namedtuple
from functools import partial
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (_check_feature_names_in, check_array, check_is_fitted,
                                      validate_data)

from . import _evaluation
from ._critics import Bound, critic_cap_for
from ._model_file import (TORCH_ATTRIBUTES, dump_torch_state, load_estimator, load_torch_state,
                          save_estimator)
from ._networks import NetworkSpec
from ._training import Engine, TrainingConfig
from ._utils import (as_positive_ints, mean_and_se, numeric_array, resolve_device, seed_from,
                     split_rows, torch_threads, warn_if_implausible)


MIBounds = namedtuple("MIBounds", ["lower", "lower_se", "upper", "upper_se"])
MIBounds.__doc__ = """Held-out bounds on I(x; codes) in nats, each with its standard error."""

_FLOAT_DTYPES = (np.float64, np.float32)


def _check_image_shape(image_shape):
    if image_shape is None:
        return None
    shape = as_positive_ints(image_shape, length=3)
    if shape is None:
        raise ValueError(f"image_shape must be (channels, height, width), three positive "
                         f"integers; got {image_shape!r}.")
    return shape


def _ndim(X):
    # np.ndim would convert array-likes that refuse numpy functions.
    ndim = getattr(X, "ndim", None)
    return np.ndim(X) if ndim is None and isinstance(X, (list, tuple)) else ndim


def _flatten_images(X, image_shape):
    """4-D image batches ``(n, C, H, W)`` to flat rows; anything else passes through."""
    if _ndim(X) != 4:
        return X
    X = np.asarray(X)
    if image_shape is None:
        raise ValueError(f"X has shape {X.shape}: 4-D input (n, C, H, W) needs "
                         "image_shape=(C, H, W).")
    if X.shape[1:] != image_shape:
        raise ValueError(f"X holds images of shape {X.shape[1:]}, but image_shape={image_shape}.")
    return X.reshape(X.shape[0], -1)


def _check_layer_sizes(sizes, name, allow_empty):
    checked = as_positive_ints(sizes)
    if checked is None:
        raise ValueError(f"{name} must be a sequence of positive integers, got {sizes!r}.")
    if not checked and not allow_empty:
        raise ValueError(f"{name} needs at least one layer size, got {sizes!r}.")
    return checked


class InfoMaxVAETransformer(TransformerMixin, BaseEstimator):
    """Dimensionality reduction with an InfoMax variational autoencoder.

    A VAE whose loss ``recon + beta * KL(q(z|x) || N(0, I)) - alpha * I_hat`` rewards
    I(x; [z, c]), bounded from below by a critic T(x, z) with its own optimiser (Rezaabad &
    Vishwanath, ISIT 2020); c are optional deterministic codes outside the KL term. Read
    more in the :doc:`/user_guide`.

    Parameters
    ----------
    n_components : int, default=2
        Size of the KL-regularised latent code z.
    n_info_components : int, default=0
        Size of c. :meth:`transform` returns ``[z_mean, c]``.
    alpha : float, default=1.0
        Weight of the MI term; 0 gives a plain VAE, whose steps train no critic (:meth:`fit`
        trains the critic that :meth:`score` uses afterwards, the same way at every alpha).
        Where it helps: :doc:`Representation benchmark </science>`.
    beta : float, default=1.0
        Weight of the KL term.
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Hidden layers of the encoder; the decoder mirrors them.
    critic_hidden_layer_sizes : tuple of int, default=(256, 256)
        Hidden layers of the critic; the first is joint over ``[x, z, c]``.
    architecture : {"mlp", "conv"}, default="mlp"
        "conv" builds the networks of :func:`~skinfomax.build_conv_networks`
        (needs ``image_shape``; ``hidden_layer_sizes`` is then unused).
    image_shape : tuple of 3 int or None, default=None
        ``(C, H, W)`` of images given as flat channels-first rows; with it, every method
        also accepts 4-D input ``(n, C, H, W)``.
    conv_channels : tuple of int, default=(64, 128, 256)
        Feature maps of the encoder's stride-2 5x5 convolutions, mirrored by the decoder;
        the critic uses the first two. Only for "conv".
    encoder, decoder, critic : torch.nn.Module, callable or None, default=None
        Custom networks: a module (deep-copied at fit) or a factory
        ``f(input_shape, n_components, n_info_components)`` returning one, called at fit under
        the estimator's seed (``input_shape``: ``image_shape`` or ``(n_features,)``). On flat
        rows, the encoder returns ``(z_mean, z_log_var, c)``, the decoder maps ``[z, c]`` to
        ``(B, n_features)`` (Gaussian mean or Bernoulli logits), and the critic has the
        methods of :class:`~skinfomax.Critic`; shapes are checked on 2 samples before training.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        "gaussian" needs no scaler: it works in standard units of the first fit's X (per
        channel for "conv"), so X and ``a * X + b`` (``a > 0`` per feature) give the same codes
        and :meth:`score`, and learns one variance per feature, floored at 1e-3 times their
        mean; :meth:`inverse_transform` answers in X's units (features constant in training as
        their constant). "bernoulli" needs X in [0, 1] (``fit`` raises ValueError otherwise).
        When to scale: :ref:`input-scaling`.
    mi_estimator : {"nwj", "dv", "infonce"}, default="nwj"
        The bound: NWJ, Donsker-Varadhan or InfoNCE (at most ``log(batch_size)``); NWJ and DV
        cap the critic's outputs at ``1 + log(batch_size)`` (the first fit's): see :meth:`score`.
    batch_size : int or "auto", default="auto"
        At least 2; "auto" is ``min(128, n_samples)`` (larger batches train faster but give
        other codes: :ref:`batch-size`); an int above a call's training samples is clipped to
        their number, with a UserWarning.
    max_iter : int, default=100
        Most epochs a ``fit`` trains; the stopping rule (``tol``) usually ends it sooner.
    learning_rate : float, default=1e-3
        Adam learning rate of the encoder, decoder and likelihood.
    critic_learning_rate : float, default=1e-3
        Adam learning rate of the critic trained alongside the VAE; a slower critic gives
        the encoder a weaker MI gradient (:doc:`Representation benchmark </science>`).
        :meth:`score`'s critic trains at 1e-3 whatever it is.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, apply the stopping rule to the validation
        loss and keep the best epoch's weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
        Patience of the stopping rule, in epochs.
    tol : float or None, default=2e-2
        The stopping rule: ``fit`` ends after ``n_iter_no_change`` epochs in a row that do not
        beat the best epoch loss (per sample; the validation loss with ``early_stopping``) by
        ``tol`` times the best's drop below the first epoch's loss; on the training loss only
        once the call has taken 5,000 optimiser steps (small data sets train ``max_iter``
        epochs). None trains ``max_iter`` epochs. ``n_iter_`` says how many ran: :ref:`stopping`.
    device : str, default="auto"
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    n_threads : int or None, default=None
        Torch CPU threads in each call, restored afterwards. None: torch's setting (capped
        inside joblib's workers), lowered to the cores other processes leave idle at the
        call's start, which on MNIST-sized layers changes results in the last bits: set it
        for bit-for-bit repeats on a shared machine (:ref:`threads <threads>`).
    precision : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        Autocast dtype of the networks' matrix work; weights, losses and the likelihood stay
        float32. "auto": bfloat16 in training steps where the device computes it natively
        (CUDA with bf16; CPUs with AVX512-BF16 or AMX, detected), float32 elsewhere and in
        every method that evaluates the fitted model (:ref:`precision <precision>`).
        "bfloat16" also evaluates in bf16; on CPUs without bf16 units it may be slower.
    compile : bool, default=False
        Compile the training loss with ``torch.compile``; on failure fit warns and trains eagerly.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, batch order and sampling, not torch's global generator.
    verbose : int, default=0
        Show a progress bar with the running loss when > 0.
    warm_start : bool, default=False
        Continue the fitted networks and optimiser states on the next :meth:`fit`.

    Attributes
    ----------
    encoder_, decoder_, critic_, likelihood_ : torch.nn.Module
        The fitted networks; ``critic_`` is the one trained alongside the VAE (in steps of
        ``alpha > 0`` and of :meth:`partial_fit`), not :meth:`score`'s after :meth:`fit`.
    info_mean_ : ndarray of shape (n_info_components,)
        Training mean of the c codes, c's prior mean in :meth:`reconstruct`.
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``reconstruction``, ``kl``, ``mi`` (per-sample means
        in nats), and ``valid_`` ones with early stopping.
    n_iter_ : int
        Number of epochs trained in total.
    batch_size_ : int
        The batch size used last.
    n_threads_ : int
        The torch threads the last training call used (``n_threads``, or what None chose).
    device_ : torch.device
        Where the networks live.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.decomposition.PCA : Linear dimensionality reduction.

    Notes
    -----
    :meth:`score` estimates how much the codes keep about X, not how useful they are: more
    information is not better features (on MNIST ``alpha=20`` raised the held-out bound and
    lowered a classifier's accuracy on the codes, :doc:`science </science>`), and the
    estimate is capped at ``1 + log B`` and depends on the fit's length. Select
    ``alpha``, ``beta`` and ``n_components`` by a downstream task or
    :func:`~skinfomax.elbo_scorer`.

    In short (in full under :doc:`Behaviour you can rely on </user_guide>`): a
    :class:`numpy.memmap` is streamed batch by batch; divergence raises
    :class:`~skinfomax.TrainingDiverged`, leaving the estimator as it was; other methods raise
    ValueError rather than return NaN; Ctrl-C keeps the completed epochs, warns and re-raises;
    an int ``random_state`` repeats results bit for bit on one machine and thread count.
    ``fit`` stops by ``tol`` before ``max_iter`` epochs on data sets large enough (:ref:`stopping`).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skinfomax import InfoMaxVAETransformer
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = InfoMaxVAETransformer(n_components=4, max_iter=2, random_state=0)
    >>> Z = vae.fit_transform(X[:300])
    >>> Z.shape
    (300, 4)
    >>> vae.inverse_transform(Z).shape
    (300, 64)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_info_components": [Interval(Integral, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "critic_hidden_layer_sizes": ["array-like"],
        "architecture": [StrOptions({"mlp", "conv"})],
        "image_shape": ["array-like", None],
        "conv_channels": ["array-like"],
        "encoder": [callable, None],
        "decoder": [callable, None],
        "critic": [callable, None],
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "mi_estimator": [StrOptions({"nwj", "dv", "infonce"})],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "critic_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "device": "no_validation",  # checked by resolve_device in fit
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "precision": [StrOptions({"auto", "float32", "bfloat16", "float16"})],
        "compile": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    def __init__(self, n_components=2, *, n_info_components=0, alpha=1.0, beta=1.0,
                 hidden_layer_sizes=(256, 128), critic_hidden_layer_sizes=(256, 256),
                 architecture="mlp", image_shape=None, conv_channels=(64, 128, 256),
                 encoder=None, decoder=None, critic=None, likelihood="gaussian",
                 mi_estimator="nwj", batch_size="auto", max_iter=100, learning_rate=1e-3,
                 critic_learning_rate=1e-3, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, tol=2e-2, device="auto", n_threads=None,
                 precision="auto", compile=False, random_state=None, verbose=0,
                 warm_start=False):
        self.n_components = n_components
        self.n_info_components = n_info_components
        self.alpha = alpha
        self.beta = beta
        self.hidden_layer_sizes = hidden_layer_sizes
        self.critic_hidden_layer_sizes = critic_hidden_layer_sizes
        self.architecture = architecture
        self.image_shape = image_shape
        self.conv_channels = conv_channels
        self.encoder = encoder
        self.decoder = decoder
        self.critic = critic
        self.likelihood = likelihood
        self.mi_estimator = mi_estimator
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.critic_learning_rate = critic_learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.n_threads = n_threads
        self.precision = precision
        self.compile = compile
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # -- validation -----------------------------------------------------------
    def _check_X(self, X):
        """Validate X without touching the estimator (so a failure changes nothing)."""
        X = numeric_array(check_array, X, dtype=_FLOAT_DTYPES, ensure_min_samples=2,
                          input_name="X", estimator=self)
        if self.likelihood == "bernoulli" and (X.min() < 0 or X.max() > 1):
            raise ValueError(f"likelihood='bernoulli' needs X in [0, 1]; got values in "
                             f"[{X.min():.4g}, {X.max():.4g}]. Scale X (e.g. MinMaxScaler) or "
                             "use likelihood='gaussian'.")
        return X

    def _network_spec(self, n_features):
        image_shape = _check_image_shape(self.image_shape)
        if image_shape is not None and math.prod(image_shape) != n_features:
            raise ValueError(f"image_shape={image_shape} has {math.prod(image_shape)} values "
                             f"per image, but X has {n_features} features.")
        if self.architecture == "conv" and image_shape is None:
            raise ValueError("architecture='conv' needs image_shape=(C, H, W) to read the flat "
                             "rows as images.")
        return NetworkSpec(
            n_features=n_features, n_components=self.n_components,
            n_info_components=self.n_info_components,
            hidden_layer_sizes=_check_layer_sizes(self.hidden_layer_sizes, "hidden_layer_sizes",
                                                  allow_empty=True),
            critic_hidden_layer_sizes=_check_layer_sizes(
                self.critic_hidden_layer_sizes, "critic_hidden_layer_sizes", allow_empty=False),
            likelihood=self.likelihood, architecture=self.architecture, image_shape=image_shape,
            conv_channels=_check_layer_sizes(self.conv_channels, "conv_channels",
                                             allow_empty=False))

    def _validation_split(self, X, seed):
        if not self.early_stopping:
            return X, None
        n_valid = math.ceil(self.validation_fraction * X.shape[0])
        if n_valid < 2 or X.shape[0] - n_valid < 2:
            raise ValueError(f"early_stopping with validation_fraction={self.validation_fraction} "
                             "needs at least 2 training and 2 validation samples; X has "
                             f"{X.shape[0]} samples.")
        valid, train = split_rows(X.shape[0], [n_valid], seed)
        return X[train], X[valid]

    def _effective_batch_size(self, n_train):
        if self.batch_size == "auto":
            return min(128, n_train)
        if self.batch_size > n_train:
            # As scikit-learn's MLP: the last chunk of a stream is usually short.
            warnings.warn(  # stacklevel: the user's fit / partial_fit call
                f"batch_size={self.batch_size} is larger than the {n_train} training samples; "
                f"it is clipped to {n_train} for this call.", UserWarning, stacklevel=5)
            return n_train
        return self.batch_size

    def _training_config(self, batch_size, incremental, cap):
        return TrainingConfig(
            alpha=float(self.alpha), beta=float(self.beta), bound=Bound(self.mi_estimator, cap),
            batch_size=batch_size, learning_rate=float(self.learning_rate),
            critic_learning_rate=float(self.critic_learning_rate),
            n_iter_no_change=self.n_iter_no_change,
            tol=None if self.tol is None else float(self.tol), precision=self.precision,
            compile=self.compile, verbose=self.verbose, critic_in_every_step=incremental)

    # -- fitting -----------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: None = None) -> "InfoMaxVAETransformer":
        """Train the VAE and its critic on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Training data; at least 2 samples. 4-D input needs ``image_shape``.
        y : None
            Ignored.

        Returns
        -------
        self : InfoMaxVAETransformer

        Raises
        ------
        TrainingDiverged
            When training diverges; the estimator is left as it was.
        KeyboardInterrupt
            Re-raised after Ctrl-C, with the completed epochs kept.
        """
        return self._fit(X, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: None = None) -> "InfoMaxVAETransformer":
        """Train for one epoch over X, continuing the fitted networks if any.

        ``k`` calls on the same X train exactly as ``fit`` with ``max_iter=k``; calls on
        successive chunks train on data that does not fit in memory. ``max_iter``,
        ``warm_start`` and ``early_stopping`` do not apply.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            A chunk of at least 2 samples (the MI bound pairs samples); one smaller than an
            int ``batch_size`` is one batch, with a warning.
        y : None
            Ignored.

        Returns
        -------
        self : InfoMaxVAETransformer
        """
        return self._fit(X, incremental=True)

    def _fit(self, X, *, incremental):
        """``fit`` (``max_iter`` epochs) and ``partial_fit`` (one); whatever can fail runs before
        the first attribute is set, so a failed call changes nothing."""
        continuing = hasattr(self, "_engine") and (incremental or self.warm_start)
        X = _flatten_images(X, _check_image_shape(self.image_shape))
        if continuing:  # scikit-learn's own message for a wrong number of features
            validate_data(self, X, reset=False, skip_check_array=True)
        X_checked = self._check_X(X)
        spec = self._network_spec(X_checked.shape[1])
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not hold out validation data; "
                             "set early_stopping=False.")
        if continuing and spec != self._engine.spec:
            how = "partial_fit" if incremental else "warm_start=True"
            raise ValueError(f"{how} continues the fitted networks, so the number of features, "
                             "n_components, n_info_components, the layer sizes, the likelihood, "
                             "architecture, image_shape and conv_channels must stay as fitted; "
                             "call fit with warm_start=False to start afresh.")
        seed = seed_from(self.random_state)
        # partial_fit has no early_stopping (checked above): no validation part.
        X_train, X_valid = self._validation_split(X_checked, seed)
        batch_size = self._effective_batch_size(X_train.shape[0])
        # The cap is the first fit's: a model's bounds stay of one kind.
        cap = self._engine.config.bound.cap if continuing else critic_cap_for(batch_size)
        config = self._training_config(batch_size, incremental, cap)
        if continuing:
            engine, previous_config = self._engine, self._engine.config
            engine.config = config
        else:
            engine = Engine.build(spec, X_train, device=resolve_device(self.device), seed=seed,
                                  config=config, encoder=self.encoder, decoder=self.decoder,
                                  critic=self.critic)
        n_epochs_before = len(engine.history)
        with torch_threads(self.n_threads) as threads:
            try:
                engine.train(X_train, 1 if incremental else self.max_iter, X_valid=X_valid,
                             stream=isinstance(X, np.memmap) and X_valid is None,
                             cover=continuing)
                if not incremental:
                    engine.train_score_critic(X_train, len(engine.history) - n_epochs_before)
            except BaseException as exc:
                # Ctrl-C keeps the completed epochs; any other failure leaves the engine as it was.
                if isinstance(exc, KeyboardInterrupt) and len(engine.history) > n_epochs_before:
                    self._set_fitted(engine, X, X_train, continuing, threads)
                elif continuing:
                    engine.config = previous_config
                raise
            return self._set_fitted(engine, X, X_train, continuing, threads)

    def _set_fitted(self, engine, X, X_train, continuing, threads):
        info_mean = np.zeros(0)
        if engine.spec.n_info_components > 0:
            info_mean = _evaluation.encode(engine, X_train)[2].mean(axis=0, dtype=np.float64)
        if not continuing:  # X was checked before training: only record its features here
            validate_data(self, X, reset=True, skip_check_array=True)
        self.history_, self.n_iter_ = list(engine.history), len(engine.history)
        self.info_mean_, self.batch_size_ = info_mean, engine.config.batch_size
        self.n_threads_ = threads
        return self._with_engine(engine)

    def _with_engine(self, engine):
        """Hold ``engine``, with its networks and device as fitted attributes."""
        self._engine, self.device_ = engine, engine.device
        self.encoder_, self.decoder_ = engine.encoder, engine.decoder
        self.critic_, self.likelihood_ = engine.critic, engine.likelihood
        return self

    # -- using the fitted model ------------------------------------------------
    @contextlib.contextmanager
    def _reading(self, X):
        """``(X validated, whether to stream it: a memmap)`` for a method of the fitted model,
        run with ``n_threads`` torch threads: every method that reads X goes through here."""
        check_is_fitted(self)
        stream = isinstance(X, np.memmap)
        image_shape = self._engine.spec.image_shape
        X = numeric_array(partial(validate_data, self), _flatten_images(X, image_shape),
                          dtype=_FLOAT_DTYPES, reset=False, ensure_min_samples=1)
        with torch_threads(self.n_threads):
            yield X, stream

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Encode X as posterior means ``[z_mean, c]`` (deterministic).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components + n_info_components)
            Same float dtype as X (float64 for non-float input).
        """
        with self._reading(X) as (X, stream):
            mean, _, c = _evaluation.encode(self._engine, X, stream)
        return np.hstack([mean, c]).astype(X.dtype, copy=False)

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Decode codes ``[z, c]`` to the decoder's means in input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components + n_info_components)
            Codes, e.g. from :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=_FLOAT_DTYPES, input_name="X")
        n_codes = self.n_components_out_
        if Z.shape[1] != n_codes:
            raise ValueError(f"X has {Z.shape[1]} columns, but this transformer decodes {n_codes} "
                             f"codes (n_components={self._engine.spec.n_components} + "
                             f"n_info_components={self._engine.spec.n_info_components}).")
        with torch_threads(self.n_threads):
            return _evaluation.decode(self._engine, Z).astype(Z.dtype, copy=False)

    def _code_index(self, component):
        """Column of ``[z, c]`` named by ``component``: an int, or "z<i>" / "c<i>"."""
        n_z, n_c = self._engine.spec.n_components, self._engine.spec.n_info_components
        n_codes = n_z + n_c
        if isinstance(component, Integral) and not isinstance(component, bool):
            if 0 <= component < n_codes:
                return int(component)
        elif isinstance(component, str):
            # Accepts get_feature_names_out's names too ("..._c0").
            match = re.fullmatch(r"(?:.*_)?([zc])(\d+)", component)
            if match:
                kind, i = match.group(1), int(match.group(2))
                if i < (n_z if kind == "z" else n_c):
                    return i if kind == "z" else n_z + i
        raise ValueError(f"component={component!r} names no latent code; use 'z0'..'z{n_z - 1}'"
                         + (f", 'c0'..'c{n_c - 1}'" if n_c else "")
                         + f" or an index in [0, {n_codes}).")

    def _images_like(self, X_new, X):
        """Give ``X_new`` the (C, H, W) layout when X came as images."""
        if _ndim(X) in (3, 4):
            return X_new.reshape(X_new.shape[0], *self._engine.spec.image_shape)
        return X_new

    def latent_traversal(self, x: ArrayLike, component: int | str,
                         values: ArrayLike) -> np.ndarray:
        """Decode one sample while sweeping one latent code over ``values``; the other codes
        stay at the sample's :meth:`transform` output.

        Parameters
        ----------
        x : array-like of shape (n_features,), (1, n_features), (C, H, W) or (1, C, H, W)
            One sample.
        component : int or str
            The code to sweep: ``"z<i>"``, ``"c<i>"`` or an index into ``[z, c]``.
        values : array-like of shape (n_values,)
            Values given to that code, e.g. ``np.linspace(-3, 3, 7)``.

        Returns
        -------
        images : ndarray of shape (n_values, n_features) or (n_values, C, H, W)
            Decoder means; image-shaped when x was given as an image.

        Examples
        --------
        >>> import numpy as np
        >>> from skinfomax import InfoMaxVAETransformer
        >>> X = np.random.RandomState(0).rand(40, 1, 6, 5)
        >>> vae = InfoMaxVAETransformer(
        ...     n_components=2, n_info_components=1, architecture="conv", image_shape=(1, 6, 5),
        ...     conv_channels=(4, 8), critic_hidden_layer_sizes=(8,), max_iter=1, random_state=0,
        ... ).fit(X)
        >>> vae.latent_traversal(X[0], "c0", np.linspace(-2, 2, 5)).shape
        (5, 1, 6, 5)
        """
        check_is_fitted(self)
        column = self._code_index(component)
        values = check_array(values, ensure_2d=False, dtype=np.float64, input_name="values")
        if values.ndim != 1:
            raise ValueError(f"values must be 1-D, got shape {values.shape}.")
        x_rows = np.asarray(x)
        if x_rows.ndim in (1, 3):
            x_rows = x_rows[None]
        if x_rows.shape[0] != 1:
            raise ValueError(f"latent_traversal decodes one sample; x has {x_rows.shape[0]} rows.")
        codes = np.repeat(self.transform(x_rows).astype(np.float64), len(values), axis=0)
        codes[:, column] = values
        return self._images_like(self.inverse_transform(codes), x)

    def reconstruct(self, X: ArrayLike, keep: str = "all") -> np.ndarray:
        """Decode X's posterior means with some codes at their prior mean (z at 0, c at
        :attr:`info_mean_`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        keep : {"all", "z", "c"}, default="all"
            Codes taken from X: all (a plain reconstruction), only z, or only c.

        Returns
        -------
        X_hat : ndarray of the shape and float dtype of X
            Decoder means.
        """
        if keep not in ("all", "z", "c"):
            raise ValueError(f"keep must be 'all', 'z' or 'c', got {keep!r}.")
        codes = self.transform(X)
        n_z = self._engine.spec.n_components
        if keep == "z":
            codes[:, n_z:] = self.info_mean_
        elif keep == "c":
            codes[:, :n_z] = 0.0
        return self._images_like(self.inverse_transform(codes), X)

    def score(self, X: ArrayLike, y: None = None) -> float:
        """Held-out lower bound on I(x; z) in nats (greater is better).

        The ``mi_estimator`` bound of a critic on fixed batches of the fitted batch size B,
        every mismatched pair within blocks of rows a draw from p(x) p(z); repeatable for a
        fixed model and data. After :meth:`fit`, at every alpha, the critic is trained afresh
        on the frozen encoder's posterior for the training rows, so that scores compare across
        alpha; after :meth:`partial_fit`, it is the one trained alongside the VAE
        (:ref:`what score means <score-meaning>`). NWJ and DV cap the critic's outputs at
        ``1 + log B`` nats, so that no pair lowers a batch's bound by more than a nat: a valid
        lower bound, at most ``1 + log B`` (:doc:`what score reports </science>`). A value
        below -1 nat warns (RuntimeWarning), naming the pairs that made it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            At least 2 samples.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        with self._reading(X) as (X, stream):
            if X.shape[0] < 2:
                raise ValueError("Scoring needs at least 2 samples: the MI bound pairs samples.")
            mi, _ = _evaluation.held_out_mi(self._engine, X, stream)
        self._warn_if_implausible(mi, X)
        return mi

    def _warn_if_implausible(self, bound, X, refitted=False):
        engine = self._engine
        estimator = engine.config.bound.estimator

        def cause():
            if refitted:
                return "the fresh critic scores some held-out pairs far above its training pairs"
            if estimator == "infonce":
                return "the critic scores mismatched held-out pairs above the joint ones"
            with torch_threads(self.n_threads):
                tail = _evaluation.marginal_tail(engine, X)
            return (f"its marginal term, the mean of exp(T(x, z') - 1) over {tail['n_pairs']} "
                    f"mismatched pairs, is half made by {tail['n_half']} of them (the largest "
                    f"critic output is {tail['max_output']:.3g}): the critic scores those "
                    "held-out pairs far above the pairs it was trained on")

        warn_if_implausible(bound, estimator, cause, "score more held-out rows, or compare with "
                            "mi_bounds(X, refit_critic=True)", stacklevel=4)

    def mi_bounds(self, X: ArrayLike, *, refit_critic: bool = False,
                  refit_max_iter: int = 100) -> MIBounds:
        """Lower and upper bounds on I(x; z) in nats, with standard errors.

        ``lower`` is :meth:`score`'s bound on X, the mean over fixed batches, with standard
        error ``sd(batch bounds) / sqrt(n_batches)`` (nan for one batch). ``upper`` is the
        encoder's rate ``E_x KL(q(z|x) || N(0, I))``, standard error ``sd / sqrt(n)``; with
        ``n_info_components > 0`` no finite upper bound exists: inf (``upper_se`` nan).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out data; at least 2 samples (8 to refit).
        refit_critic : bool, default=False
            The paper's protocol: train a fresh critic (capped as :meth:`score`'s) on the
            frozen encoder's posterior draws for half of X and evaluate both bounds on the
            other half, the model unchanged; noisy on a few hundred rows (check ``lower_se``).
            False uses :meth:`score`'s critic (``lower == score(X)``).
        refit_max_iter : int, default=100
            Maximum epochs of the fresh critic.

        Returns
        -------
        bounds : MIBounds
            ``(lower, lower_se, upper, upper_se)``.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skinfomax import InfoMaxVAETransformer
        >>> X = load_digits().data / 16
        >>> vae = InfoMaxVAETransformer(n_components=3, max_iter=3, random_state=0).fit(X[:300])
        >>> b = vae.mi_bounds(X[300:600])
        >>> bool(b.lower <= b.upper + 2 * b.lower_se)
        True
        """
        with self._reading(X) as (X, stream):
            if not isinstance(refit_critic, (bool, np.bool_)):
                raise TypeError(f"refit_critic must be True or False, got {refit_critic!r}.")
            if not (isinstance(refit_max_iter, Integral) and refit_max_iter >= 1):
                raise ValueError("refit_max_iter must be a positive integer, got "
                                 f"{refit_max_iter!r}.")
            min_samples = 8 if refit_critic else 2
            if X.shape[0] < min_samples:
                raise ValueError(f"mi_bounds needs at least {min_samples} samples"
                                 f"{' with refit_critic=True' if refit_critic else ''}; "
                                 f"got {X.shape[0]}.")
            engine = self._engine
            if refit_critic:
                values, held_out = _evaluation.refitted_mi(engine, X, refit_max_iter, self.verbose)
                lower, lower_se = mean_and_se(values)
                X, stream = X[held_out], False
            else:
                lower, values = _evaluation.held_out_mi(engine, X, stream)
                lower_se = mean_and_se(values)[1]
            if not math.isfinite(lower):  # only a refitted critic can get here
                raise FloatingPointError("The refitted critic diverged: its bound on this X is not "
                                         "finite. Give more samples, or use refit_critic=False.")
            self._warn_if_implausible(lower, X, refitted=refit_critic)
            if engine.spec.n_info_components > 0:
                upper, upper_se = math.inf, math.nan
            else:
                kl = _evaluation.kl_per_dimension(engine, X, stream)
                upper, upper_se = mean_and_se(kl.sum(axis=1))
        return MIBounds(lower, lower_se, upper, upper_se)

    def kl_per_dimension(self, X: ArrayLike) -> np.ndarray:
        """KL(q(z|x) || N(0, I)) of each sample and z dimension, in nats.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        kl : ndarray of shape (n_samples, n_components)
        """
        with self._reading(X) as (X, stream):
            return _evaluation.kl_per_dimension(self._engine, X, stream).astype(np.float64)

    def elbo(self, X: ArrayLike) -> float:
        """Mean evidence lower bound per sample in nats: ``-(recon + KL)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)

        Returns
        -------
        elbo : float
        """
        with self._reading(X) as (X, stream):
            terms = _evaluation.elbo_terms(self._engine, X, stream)
        return -(terms["reconstruction"] + terms["kl"])

    @property
    def n_components_out_(self) -> int:
        """Width of :meth:`transform`'s output: ``n_components + n_info_components`` as fitted."""
        check_is_fitted(self)
        return self._engine.spec.n_components + self._engine.spec.n_info_components

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Names of the codes: ``<prefix>z0, ..., <prefix>c0, ...``.

        Parameters
        ----------
        input_features : array-like of str or None
            Only checked against the features seen in fit.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        prefix = type(self).__name__.lower()
        n_z, n_c = self._engine.spec.n_components, self._engine.spec.n_info_components
        names = [f"{prefix}_z{i}" for i in range(n_z)] + [f"{prefix}_c{i}" for i in range(n_c)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- pickling ----------------------------------------------------------------
    def __getstate__(self):
        # A copy: object.__getstate__ may hand back the live __dict__.
        state = dict(super().__getstate__())
        torch_objects = {k: state.pop(k) for k in TORCH_ATTRIBUTES if k in state}
        if torch_objects:
            state["_torch_blob"] = dump_torch_state(torch_objects)
        return state

    def __setstate__(self, state):
        blob = state.pop("_torch_blob", None)
        if blob is not None:
            objects, device = load_torch_state(blob, state["device_"])
            objects["_engine"].device = device
            state.update(objects, device_=device)
        super().__setstate__(state)

    # -- model files -------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one safetensors file, from which loading runs no code.

        The file holds the weights, optimiser and random-stream states as tensors, the rest as
        JSON, and a SHA-256 digest, and is replaced whole; :meth:`load`'s model transforms and
        trains on exactly as this one would. Custom networks are saved as weights only.

        Parameters
        ----------
        path : str or path-like

        Raises
        ------
        TypeError
            When a parameter or fitted attribute has no JSON form (for example a
            ``random_state`` that is a numpy ``Generator``).

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skinfomax import InfoMaxVAETransformer
        >>> X = load_digits().data[:200] / 16
        >>> vae = InfoMaxVAETransformer(n_components=2, max_iter=2, random_state=0).fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "vae.safetensors")
        >>> vae.save(path)
        >>> restored = InfoMaxVAETransformer.load(path)
        >>> bool((restored.transform(X) == vae.transform(X)).all())
        True
        """
        save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None, *, encoder=None,
             decoder=None, critic=None) -> "InfoMaxVAETransformer":
        """A model from a file written by :meth:`save`, without running code from it.

        A damaged file, one that is not a skinfomax model or one in a newer format raises
        ValueError naming the reason.

        Parameters
        ----------
        path : str or path-like
        device : str, torch.device or None, default=None
            Where to put the networks (also the ``device`` parameter). None keeps the fitted
            device when available, else the CPU with a UserWarning.
        encoder, decoder, critic : torch.nn.Module, callable or None, default=None
            Required exactly when the model was fitted with custom networks: the same module
            or factory as at fit.

        Returns
        -------
        model : InfoMaxVAETransformer
            Fitted, with its training state: a warm start or :meth:`partial_fit` continues as
            the saved model would have.
        """
        return load_estimator(cls, path, device, encoder=encoder, decoder=decoder, critic=critic)
