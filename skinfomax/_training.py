"""The training engine: numpy in, torch inside, no scikit-learn. One forward and backward pass
a step serves both players: the gradients of ``recon + beta * KL - I_hat``, those from ``I_hat``
into the encoder scaled by alpha (``_ScaleGradient``), are the VAE's and the critic's. Loss sums
stay on the device until one host sync per epoch, which catches a NaN in any step.
"""

import contextlib
import copy
import math
import warnings
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import _evaluation
from ._critics import Bound, SingleCritic
from ._cuda_graphs import GraphedSteps, warn_fallback
from ._likelihoods import build_likelihood
from ._networks import build_networks, check_networks
from ._objectives import codes_from_noise, derangement_shift, gaussian_kl, standard_normal
from ._units import InputUnits, Rows
from ._utils import EarlyStopping, bf16_units, default_dtype, deferred_interrupt, generators, seeded

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The training-loss stopping rule acts only after this many steps of a call: on the measured
# curves, held-out codes still improved at up to 1,600 steps while the loss had flattened by the
# rule's measure, and changed little after 4,000-8,000 (docs/performance.md, "When fit stops").
MIN_STOPPING_STEPS = 5_000


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class TrainingDiverged(FloatingPointError):
    """A loss or a weight became NaN or infinite; the engine is as it was before the call."""


@dataclass(frozen=True)
class TrainingConfig:
    """The hyper-parameters of training. ``critic_in_every_step``: train the critic even where
    the loss does not use it (alpha = 0), as a stream's score needs (no later pass trains one)."""

    alpha: float = 1.0
    beta: float = 1.0
    bound: Bound = Bound()
    batch_size: int = 128
    learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    n_iter_no_change: int = 5
    tol: float | None = 2e-2
    precision: str = "float32"
    compile: bool = False
    verbose: int = 0
    critic_in_every_step: bool = True


def _divergence_message(config, epoch, what):
    return (
        f"Training diverged in epoch {epoch}: {what} became NaN or infinite. Likely causes: "
        f"a learning rate too high for this data (learning_rate={config.learning_rate:g}, "
        f"critic_learning_rate={config.critic_learning_rate:g}), an alpha "
        f"({config.alpha:g}) large enough for the MI term to run away, or inputs the "
        "networks cannot take as they are (unscaled X with likelihood='bernoulli', "
        "custom networks). Lower them and train again.")


@torch.no_grad()
def _weight_sum(modules):
    """Sum of every weight: finite exactly when all of them are (short of overflow)."""
    return torch.stack([p.sum() for m in modules for p in m.parameters()]).sum()


def _fused_adam_available(device):
    # Fused Adam: one kernel for all parameters; CUDA always, CPU since torch 2.4.
    if device.type != "cpu":
        return device.type == "cuda"
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


class Engine:
    """Trains an InfoMax VAE built from ``spec``; owns every piece of training state. ``units``
    (or None) standardise inputs; ``seed`` starts the training streams and fixes evaluation's;
    a new ``config`` applies from the next training call on. ``score_critic``, the critic of
    held-out bounds, is trained afresh after a fit, else the one trained alongside."""

    def __init__(self, spec, networks, likelihood, *, device, seed, units, config,
                 cuda_graphs=True):
        self.encoder, self.decoder, self.critic = (m.to(device) for m in networks)
        self.likelihood = likelihood.to(device)
        self.spec, self.device, self.seed, self.config = spec, device, seed, config
        self.units, self.cuda_graphs = units, cuda_graphs
        self.score_critic = self.critic
        self.history = []  # one record per epoch, across training calls
        self.vae_optimizer = self.critic_optimizer = self.scaler = None
        self.rng_state = None  # generator states where the last training call stopped
        self._compile_failed, self._compiled, self._graphs = False, None, None

    @classmethod
    def build(cls, spec, X, *, device, seed, config, encoder=None, decoder=None, critic=None):
        """An engine for ``spec`` and data like X (the Gaussian likelihood's units: X's, per
        channel for conv), weights drawn under ``seed``, its networks checked on two rows."""
        units = None
        if spec.likelihood == "gaussian":
            channels = spec.image_shape[0] if spec.architecture == "conv" else None
            units = InputUnits.fit(X, n_channels=channels)
        # float32 whatever the caller's default dtype: the data are sent in float32.
        with seeded(seed), default_dtype(torch.float32):
            networks = build_networks(spec, encoder, decoder, critic)
            likelihood = build_likelihood(spec.likelihood,
                                          None if units is None else units.feature_variance)
        # Graphs replay without running Python: only the built-in networks are capture-safe.
        builtin = all(custom is None for custom in (encoder, decoder, critic))
        engine = cls(spec, networks, likelihood, device=device, seed=seed, units=units,
                     config=config, cuda_graphs=builtin)
        check_networks(engine.encoder, engine.decoder, engine.critic, engine.rows(X[:2]).tensor,
                       spec.n_components, spec.n_info_components)
        return engine

    # Compiled functions and CUDA graphs do not pickle; they are rebuilt on use.
    def __getstate__(self):
        return {**self.__dict__, "_compiled": None, "_graphs": None}

    def rows(self, X, stream=False, what="X"):
        """X as the networks take it, on the device (:class:`~skinfomax._units.Rows`)."""
        return Rows(X, self.device, stream, self.units, what)

    def modules(self):
        """The trained modules: encoder, decoder, likelihood, critic."""
        return (self.encoder, self.decoder, self.likelihood, self.critic)

    def set_train(self, mode):
        for module in self.modules():
            module.train(mode)

    def autocast(self, training=False):
        """The ``precision`` context of the networks' matrix work; "auto" is bfloat16 in
        training steps on a device with bf16 units (:func:`~skinfomax._utils.bf16_units`) and
        float32 everywhere else."""
        precision = self.config.precision
        if precision == "auto":
            precision = "bfloat16" if training and bf16_units(self.device) else "float32"
        dtype = PRECISIONS[precision]
        if dtype is None:
            return contextlib.nullcontext()
        # No cast cache under graph capture: cached casts would outlive the capture.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=self._graphs is None)

    @property
    def trains_critic(self):
        """Whether training steps train the critic: where the loss uses it, or if asked."""
        return self.config.alpha != 0 or self.config.critic_in_every_step

    def make_optimizers(self):
        """Both Adam optimisers (kept when they exist) at the config's learning rates."""
        config = self.config
        if self.vae_optimizer is None:
            fused = {"fused": True} if _fused_adam_available(self.device) else {}
            if self._use_graphs():
                fused["capturable"] = True  # step counts on the device
            vae_params = [p for m in self.modules()[:3] for p in m.parameters()]
            self.vae_optimizer = torch.optim.Adam(vae_params, lr=config.learning_rate, **fused)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(),
                                                     lr=config.critic_learning_rate, **fused)
        if self.scaler is None and config.precision == "float16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        for optimizer, lr in ((self.vae_optimizer, config.learning_rate),
                              (self.critic_optimizer, config.critic_learning_rate)):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _use_graphs(self):
        # Loss scaling (float16) checks for infs on the host every step: not capturable.
        return (self.cuda_graphs and self.device.type == "cuda"
                and self.config.precision != "float16")

    # -- one step -----------------------------------------------------------
    def _step_loss(self, x, eps, shift, bound, alpha, beta, with_critic=True):
        """The objective ``recon + beta * KL - alpha * I`` and the batch's loss sums (float32; the
        compiled unit, under the caller's autocast, which inside would break the graph); the
        detached ``(1 - alpha) * I`` leaves the critic ``-I``'s gradient; no critic: MI sum 0."""
        mean, log_var, c = (t.float() for t in self.encoder(x))
        codes = codes_from_noise(mean, log_var, c, eps)
        recon = self.likelihood.nll(x, self.decoder(codes).float())
        kl = gaussian_kl(mean, log_var)
        if with_critic:
            scaled = _ScaleGradient.apply(codes, alpha)
            mi = bound(SingleCritic(self.critic), x[None], scaled[None], (shift,))[0]
        else:
            mi = recon.new_zeros(())
        objective = recon.mean() + beta * kl.mean() - mi + (1.0 - alpha) * mi.detach()
        sums = torch.stack([recon.sum(), kl.sum(), mi * x.shape[0]]).detach()
        return objective, sums

    def _loss_function(self):
        if not (self.config.compile and not self._compile_failed):
            return self._step_loss
        if self._compiled is None:
            self._compiled = torch.compile(self._step_loss)
        return self._compiled

    def _clear_grads(self):
        self.vae_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)

    def _optimise(self, x, eps, shift, capturing=False):
        """One step of both optimisers, returning the loss sums; a failing compiled loss falls
        back to the eager one with a warning (not under capture, where gradients are None)."""
        config, with_critic = self.config, self.trains_critic
        args = (x, eps, shift, config.bound, config.alpha, config.beta, with_critic)
        optimizers = (self.vae_optimizer, self.critic_optimizer)[:1 + with_critic]
        while True:
            loss_function = self._loss_function()
            try:
                if not capturing:  # first: a compiled backward that failed half-way leaves no trace
                    self._clear_grads()
                with self.autocast(training=True):
                    objective, sums = loss_function(*args)
                if self.scaler is None:
                    objective.backward()
                    for optimizer in optimizers:
                        optimizer.step()
                else:
                    self.scaler.scale(objective).backward()
                    for optimizer in optimizers:
                        self.scaler.step(optimizer)
                    self.scaler.update()
                return sums
            except Exception as exc:  # noqa: BLE001 - failures vary; eager re-raises real bugs
                if capturing or loss_function is self._step_loss:
                    raise
                warn_fallback("torch.compile", exc, "without compiling")
                self._compile_failed, self._compiled = True, None

    def _train_epoch(self, rows, cpu_gen, noise_gen, interrupt):
        """One epoch (less on interrupt): its summary and whether the weights are finite, in one
        host sync (a NaN in any step's losses reaches the sums on the device)."""
        self.set_train(True)
        step = self._graphs or self._optimise
        totals = torch.zeros(3, dtype=torch.float32, device=self.device)
        for x in rows.batches(self.config.batch_size, cpu_gen):
            if interrupt.requested:
                break
            shift = derangement_shift(x.shape[0], cpu_gen)
            eps = standard_normal((x.shape[0], self.spec.n_components), noise_gen, self.device)
            totals += step(x, eps, shift)
        *sums, weight_sum = torch.cat([totals, _weight_sum(self.modules()).reshape(1)]).tolist()
        summary = _evaluation.per_sample(self, sums, rows.n_rows, self.trains_critic)
        return summary, math.isfinite(weight_sum)

    # -- a training call ----------------------------------------------------
    def _checkpoint(self):
        """Copies of everything a training call changes: weights, optimiser states, streams."""
        optimizers = (self.vae_optimizer, self.critic_optimizer, self.scaler)
        return {"modules": [copy.deepcopy(m.state_dict()) for m in self.modules()],
                "optimizers": [o and copy.deepcopy(o.state_dict()) for o in optimizers],
                "rng_state": self.rng_state, "n_epochs": len(self.history),
                "score_critic": self.score_critic, "units": self.units}

    def _restore(self, checkpoint):
        for module, state in zip(self.modules(), checkpoint["modules"]):
            module.load_state_dict(state)
        optimizers = (self.vae_optimizer, self.critic_optimizer, self.scaler)
        for optimizer, state in zip(optimizers, checkpoint["optimizers"]):
            if optimizer is not None and state is not None:
                optimizer.load_state_dict(state)
        if checkpoint["optimizers"][0] is None:  # none before the call: built at first use
            self.vae_optimizer = self.critic_optimizer = self.scaler = None
        self.rng_state, self.units = checkpoint["rng_state"], checkpoint["units"]
        self.score_critic = checkpoint["score_critic"]
        del self.history[checkpoint["n_epochs"]:]

    def train(self, X, n_epochs, X_valid=None, stream=False, cover=False):
        """Train up to ``n_epochs`` epochs from where the last call stopped (the stopping rule
        may end it sooner; with ``X_valid`` on its loss, restoring the best epoch); returns
        :attr:`history`. ``cover`` widens the units to X (:meth:`InputUnits.covering`).
        Divergence raises :class:`TrainingDiverged`, the engine as before the call, unless
        ``X_valid`` has a finite best epoch, kept with a RuntimeWarning. Ctrl-C is re-raised
        after the step, completed epochs kept (none: the engine as before the call)."""
        units = self.units.covering(X) if cover and self.units is not None else self.units
        rows = Rows(X, self.device, stream, units)  # input errors first, before any change
        valid = None if X_valid is None else Rows(X_valid, self.device, stream, units, "X_valid")
        checkpoint = self._checkpoint()
        self.units = units
        self.score_critic = self.critic  # a critic trained apart was of the encoder before
        with deferred_interrupt() as interrupt:
            # Graphs bake in this call's alpha, beta and learning rates.
            self.make_optimizers()
            self._graphs = GraphedSteps(self._optimise, self._clear_grads) \
                if self._use_graphs() else None
            cpu_gen, noise_gen = generators(self.seed, self.device, self.rng_state)
            stopping = self._stopping_rule(n_epochs, valid is not None)
            try:
                diverged = self._epochs(n_epochs, rows, valid, stopping, cpu_gen, noise_gen,
                                        interrupt)
            except KeyboardInterrupt:  # raised inside a step: no deferral (not the main thread)
                interrupt.requested, diverged = True, None
                if not math.isfinite(_weight_sum(self.modules()).item()):
                    diverged = (len(self.history) + 1, "the weights")
            finally:
                if self._graphs is not None:  # their memory pools and gradient buffers go
                    self._graphs = None
                    self._clear_grads()
        self.rng_state = (cpu_gen.get_state(), noise_gen.get_state())
        self.set_train(False)
        completed = len(self.history) - checkpoint["n_epochs"]
        if diverged is not None:
            self._after_divergence(checkpoint, stopping, completed, *diverged)
        elif stopping is not None:
            stopping.restore()  # the best epoch's weights with validation, else a no-op
        if interrupt.requested:
            if completed == 0:
                self._restore(checkpoint)
            warnings.warn(
                f"Training interrupted: {completed} epoch(s) of this call completed and kept"
                + ("." if completed else "; the model is as it was before the call."),
                RuntimeWarning, stacklevel=2)
            raise KeyboardInterrupt
        return self.history

    def _stopping_rule(self, n_epochs, validating):
        """The call's stopping rule: patience on the epoch loss, gains measured against the
        first epoch's (:class:`~skinfomax._utils.EarlyStopping`, ``relative``). With validation
        it snapshots the best epoch's weights, and ``tol=None`` keeps that without stopping."""
        config = self.config
        if config.tol is None and not validating:
            return None
        tensors = ([t.unsqueeze(0) for m in self.modules() for t in m.state_dict().values()]
                   if validating else [])
        patience = config.n_iter_no_change if config.tol is not None else n_epochs + 1
        return EarlyStopping(tensors, patience, config.tol or 0.0, relative=True)

    def _epochs(self, n_epochs, rows, valid, stopping, cpu_gen, noise_gen, interrupt):
        """The epoch loop; returns ``(epoch, what)`` when training diverged, else None."""
        first_epoch = len(self.history) + 1
        steps_per_epoch = max(1, rows.n_rows // self.config.batch_size)
        epochs = range(first_epoch, first_epoch + n_epochs)
        with tqdm(epochs, desc="InfoMaxVAE", unit="epoch", disable=not self.config.verbose) as bar:
            for epoch in bar:
                summary, weights_finite = self._train_epoch(rows, cpu_gen, noise_gen, interrupt)
                if not weights_finite:
                    return epoch, "the weights"
                if not all(math.isfinite(v) for k, v in summary.items()
                           if k != "mi" or self.trains_critic):
                    return epoch, "the loss"
                if interrupt.requested:  # mid-epoch: the epoch is not recorded
                    return None
                record = {"epoch": epoch, **summary}
                if valid is not None:
                    scores = _evaluation.summary(self, valid, self.critic if self.trains_critic
                                                 else None)
                    record.update({f"valid_{k}": v for k, v in scores.items()})
                    if not math.isfinite(record["valid_loss"]):
                        return epoch, "the validation loss"
                self.history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", mi=f"{record['mi']:.3g}")
                if stopping is not None:
                    steps = (epoch - first_epoch + 1) * steps_per_epoch
                    stopping.update(-record["loss" if valid is None else "valid_loss"],
                                    may_stop=valid is not None or steps >= MIN_STOPPING_STEPS)
                    if bool(stopping.stopped):
                        return None
        return None

    def _after_divergence(self, checkpoint, stopping, completed, epoch, what):
        message = _divergence_message(self.config, epoch, what)
        if stopping is None or not stopping.tensors or completed == 0:
            self._restore(checkpoint)
            raise TrainingDiverged(message)
        stopping.restore()
        # The moments of the diverged steps would carry the NaNs into the next call.
        self.vae_optimizer = self.critic_optimizer = self.scaler = None
        best = checkpoint["n_epochs"] + int(stopping.best_epoch.item())
        warnings.warn(f"{message} Early stopping keeps the weights of the best epoch ({best}); "
                      f"the history ends at epoch {len(self.history)}, the last finite one.",
                      RuntimeWarning, stacklevel=3)

    def train_score_critic(self, X, n_epochs):
        """Train :attr:`score_critic` afresh after a fit of ``n_epochs`` epochs over X."""
        self.score_critic = _evaluation.fresh_score_critic(self, X, n_epochs)
