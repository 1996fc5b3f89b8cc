"""The training engine: numpy in and out, torch modules inside, no scikit-learn.

One forward and one backward pass per step serve both players: the VAE minimises
``recon + beta * KL - alpha * I_hat``, the critic maximises ``I_hat``. Both want ``I_hat``
larger, so the gradients of ``recon + beta * KL - I_hat``, with the gradient from ``I_hat``
into the encoder scaled by alpha (``_ScaleGradient``), are the players' gradients: the
reference designs' alternating scheme at half the cost. Data that fits moves to the device
once (no DataLoader); a memmap is streamed. Loss sums stay on the device until one host sync
per epoch, which catches a NaN in any step.
"""

import contextlib
import copy
import math
import warnings
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from ._critics import (VALIDATION_PAIRS, CachedPosterior, SingleCritic, bound, critic_cap_for,
                       marginal_terms, train_fresh_critic)
from ._likelihoods import build_likelihood
from ._networks import NetworkSpec, build_networks, check_networks
from ._objectives import codes_from_noise, derangement_shift, gaussian_kl
from ._units import InputUnits, to_float32
from ._utils import (EVAL_CHUNK, EarlyStopping, batch_slices, default_dtype, deferred_interrupt,
                     generators, seeded, spawn_seeds, take_rows)

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Eager steps per batch shape before a CUDA graph is captured (lazy init happens in them).
_GRAPH_WARMUP_STEPS = 3

# The critic that score uses trains on at most this many rows (drawn at random): its steps
# do not grow with the sample (CriticConfig.epoch_batches), so more rows only cost memory.
SCORE_CRITIC_ROWS = 65_536
SCORE_CRITIC_EPOCHS = 100  # of CriticConfig.epoch_batches steps each, as mi_bounds' refit
# ...and at most this share of the VAE's steps in the fit: a critic-only step costs about
# 40% of an InfoMax step, so the scoring critic adds at most ~10% to a fit.
SCORE_CRITIC_STEP_SHARE = 0.25


# -- CUDA graphs -----------------------------------------------------------------
# At tabular and MNIST sizes an eager GPU step is bound by host-side kernel launches. A CUDA
# graph replays the whole step (forward, backward, both Adam updates) with one launch; the
# batch, noise and shift go through static buffers refilled before each replay.
class GraphedStep:
    """``step(x, eps, shift) -> sums`` captured (not run) for the shapes of ``x`` and ``eps``.

    ``step`` must be capture-safe: no host sync, optimisers with ``capturable=True``, and
    gradients None before the capture (so backward writes fresh buffers).
    """

    def __init__(self, step, x, eps, shift):
        self.x, self.eps = torch.empty_like(x), torch.empty_like(eps)
        self.shift = torch.zeros((), dtype=torch.long, device=x.device)
        self._fill(x, eps, shift)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.sums = step(self.x, self.eps, self.shift)

    def _fill(self, x, eps, shift):
        self.x.copy_(x)
        self.eps.copy_(eps)
        self.shift.fill_(shift)

    def __call__(self, x, eps, shift):
        """Run the step; the result is overwritten by the next call."""
        self._fill(x, eps, shift)
        self.graph.replay()
        return self.sums


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
    """The hyper-parameters of training: the objective, the optimisers, early stopping, speed."""

    alpha: float = 1.0
    beta: float = 1.0
    estimator: str = "nwj"
    batch_size: int = 128
    learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    n_iter_no_change: int = 10
    tol: float = 1e-4
    precision: str = "float32"
    compile: bool = False
    verbose: int = 0
    # Train the critic in every step even where the loss does not use it (alpha = 0): a
    # stream's score has no later pass for a critic of its own (see train_score_critic).
    critic_alongside: bool = True


def _current_config_names(config):
    # Older format-1 model files call the estimator field "mi_estimator".
    config = dict(config)
    if "mi_estimator" in config:
        config["estimator"] = config.pop("mi_estimator")
    return config


def _generator_state(cpu, noise):
    return (cpu.get_state(), noise.get_state())


def _with_prefix(tensors, prefix):
    """The entries of ``tensors`` whose names start with ``prefix``, without it."""
    return {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}


def _warn_fallback(what, exc, how):
    """Warn that an optional speed-up failed and training goes on without it."""
    warnings.warn(  # stacklevel: the user's fit / partial_fit call
        f"{what} failed ({type(exc).__name__}: {str(exc)[:200]}); training continues {how}.",
        RuntimeWarning, stacklevel=5)


def _check_finite(values, what):
    if not all(np.isfinite(v).all() for v in values):
        raise ValueError(f"The trained networks give NaN or infinite values for {what} of this "
                         "input: it lies too far outside the data they were trained on.")


def _fused_adam_available(device):
    # Fused Adam: one kernel for all parameters; CUDA always, CPU since torch 2.4.
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


class _Rows:
    """Rows of X in the networks' units (standardised on the host by ``units``), either
    resident on the device (one transfer) or streamed a batch at a time (a memmap).
    """

    def __init__(self, X, device, stream=False, units=None, what="X"):
        self.device, self.n_rows, self.units, self.what = device, X.shape[0], units, what
        if stream:
            self.host, self.tensor = X, None
        else:
            self.host, self.tensor = None, torch.from_numpy(self._float32(X)).to(device)

    def _float32(self, rows):
        if self.units is None:
            return to_float32(rows, self.what)
        return self.units.standardise(rows, self.what)

    def _send(self, rows):
        # One batch: copied when read-only (a memmap), so torch may own it.
        return torch.from_numpy(self._float32(rows)).to(self.device,
                                                         non_blocking=self.device.type == "cuda")

    def batches(self, batch_size, generator=None):
        """Batches of rows on the device (``_utils.batch_slices``)."""
        where = self.device if self.tensor is not None else torch.device("cpu")
        for index in batch_slices(self.n_rows, batch_size, generator, where):
            yield (take_rows(self.tensor, index) if self.tensor is not None
                   else self._send(self.host[index.numpy()]))

    def chunks(self, size):
        """Consecutive chunks of exactly ``size`` rows (the last zero-padded)."""
        for start in range(0, self.n_rows, size):
            if self.tensor is not None:
                chunk = self.tensor[start : start + size]
            else:
                chunk = self._send(self.host[start : start + size])
            if chunk.shape[0] < size:
                chunk = torch.cat([chunk, chunk.new_zeros(size - chunk.shape[0], *chunk.shape[1:])])
            yield chunk


class Engine:
    """Trains and evaluates an InfoMax VAE; owns every piece of training state.

    ``units`` (or None) standardise inputs and are undone on decoder means; ``seed`` starts
    the training streams and fixes evaluation's; ``code_sizes`` (z, c) are read from an
    :class:`~skinfomax.Encoder` when None; ``critic_cap`` caps NWJ / DV critic outputs in
    training and evaluation alike (None: uncapped).
    """

    def __init__(self, encoder, decoder, critic, likelihood, *, device, seed, units=None,
                 config=TrainingConfig(), code_sizes=None, cuda_graphs=True, critic_cap=None):
        if code_sizes is None:
            n_z, _, n_c = encoder.split_sizes
            code_sizes = (n_z, n_c)
        self.n_components, self.n_info_components = code_sizes
        self.encoder, self.decoder = encoder.to(device), decoder.to(device)
        self.critic, self.likelihood = critic.to(device), likelihood.to(device)
        self.device, self.seed, self.config = device, seed, config
        self.units, self.cuda_graphs = units, cuda_graphs
        self.spec = None  # the NetworkSpec the networks were built from, if any
        self.history = []  # one record per epoch, across training calls
        self.vae_optimizer = self.critic_optimizer = self.scaler = None
        self.rng_state = None  # generator states where the last training call stopped
        self.critic_cap = critic_cap  # NWJ / DV bounds of the critic capped here (None: not)
        # The critic score uses when trained apart from the steps (train_score_critic);
        # None: the critic trained alongside. Never trained in place, so a reference
        # checkpoints it.
        self.score_critic = None
        self._compile_failed = False
        self._compiled = None
        self._graphs = None  # {batch size: GraphedStep} during a train call on CUDA

    @classmethod
    def build(cls, spec, X, *, device, seed, config, encoder=None, decoder=None, critic=None):
        """An engine for ``spec`` and data like X, weights drawn under ``seed``.

        The Gaussian likelihood works in standard units from X (per channel for conv); a dry
        pass on two rows checks that the networks fit each other and the data.
        """
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
        engine = cls(*networks, likelihood, device=device, seed=seed, units=units, config=config,
                     code_sizes=(spec.n_components, spec.n_info_components), cuda_graphs=builtin,
                     critic_cap=critic_cap_for(config.batch_size))
        engine.spec = spec
        check_networks(engine.encoder, engine.decoder, engine.critic, engine._tensor(X[:2]),
                       spec.n_components, spec.n_info_components)
        return engine

    def configure(self, config):
        """Use ``config`` from the next training call on (weights and optimiser states stay)."""
        self.config = config

    # Compiled functions and CUDA graphs do not pickle; they are rebuilt on use.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = state["_graphs"] = None
        return state

    @property
    def precision(self):
        return self.config.precision

    @property
    def compiles(self):
        """Whether the loss is compiled (``config.compile``, unless compiling failed)."""
        return self.config.compile and not self._compile_failed

    def _use_graphs(self):
        # Loss scaling (float16) checks for infs on the host every step: not capturable.
        return self.cuda_graphs and self.device.type == "cuda" and self.precision != "float16"

    def _tensor(self, X):
        """X in the networks' units, as a float32 tensor on the device."""
        return self._rows(X).tensor

    def _rows(self, X, stream=False, what="X"):
        return _Rows(X, self.device, stream, self.units, what)

    def inputs(self, X):
        """X as the networks see it (standardised when the engine has units), float32 numpy."""
        return to_float32(X) if self.units is None else self.units.standardise(X)

    # -- pieces -------------------------------------------------------------
    def _vae_modules(self):
        return (self.encoder, self.decoder, self.likelihood)

    def _modules(self):
        return (*self._vae_modules(), self.critic)

    def _set_train(self, mode):
        for module in self._modules():
            module.train(mode)

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        # No cast cache under graph capture: cached casts would outlive the capture.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=self._graphs is None)

    @property
    def trains_critic(self):
        """Whether training steps train the critic: where the loss uses it, or if asked."""
        return self.config.alpha != 0 or self.config.critic_alongside

    def _step_loss(self, x, eps, shift, estimator, alpha, beta, with_critic=True):
        """The objective and the batch's loss sums (the compiled unit); sums and exponentials
        in float32. Its value is ``recon + beta * KL - alpha * I``; the detached
        ``(1 - alpha) * I`` leaves the critic the gradient of ``-I``. Without the critic
        the MI sum is 0 (recorded as NaN: not estimated).
        """
        with self._autocast():
            mean, log_var, c = (t.float() for t in self.encoder(x))
            codes = codes_from_noise(mean, log_var, c, eps)
            recon = self.likelihood.nll(x, self.decoder(codes).float())
            kl = gaussian_kl(mean, log_var)
            if with_critic:
                scaled = _ScaleGradient.apply(codes, alpha)
                mi = bound(SingleCritic(self.critic), x[None], scaled[None], estimator,
                           shifts=(shift,), cap=self.critic_cap)[0]
            else:
                mi = recon.new_zeros(())
        objective = recon.mean() + beta * kl.mean() - mi + (1.0 - alpha) * mi.detach()
        sums = torch.stack([recon.sum(), kl.sum(), mi * x.shape[0]]).detach()
        return objective, sums

    def _loss_function(self):
        if not self.compiles:
            return self._step_loss
        if self._compiled is None:
            self._compiled = torch.compile(self._step_loss)
        return self._compiled

    def _configure_optimizers(self):
        config = self.config
        if self.vae_optimizer is None:
            fused = {"fused": True} if _fused_adam_available(self.device) else {}
            if self._use_graphs():
                fused["capturable"] = True  # step counts on the device
            vae_params = [p for m in self._vae_modules() for p in m.parameters()]
            self.vae_optimizer = torch.optim.Adam(vae_params, lr=config.learning_rate, **fused)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(),
                                                     lr=config.critic_learning_rate, **fused)
        if self.scaler is None and self.precision == "float16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        for optimizer, lr in ((self.vae_optimizer, config.learning_rate),
                              (self.critic_optimizer, config.critic_learning_rate)):
            for group in optimizer.param_groups:
                group["lr"] = lr

    # -- training -----------------------------------------------------------
    def _step(self, x, eps, shift):
        if self._graphs is not None:
            return self._graphed_step(x, eps, shift)
        return self._optimise(x, eps, shift)

    def _graphed_step(self, x, eps, shift):
        size = x.shape[0]
        graphed = self._graphs.get(size)
        if graphed is None and self._warmups.get(size, 0) < _GRAPH_WARMUP_STEPS:
            # Eager steps on a side stream: lazy init (optimiser state, cuBLAS) precedes capture.
            self._warmups[size] = self._warmups.get(size, 0) + 1
            current, side = torch.cuda.current_stream(self.device), torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                sums = self._optimise(x, eps, shift)
            current.wait_stream(side)
            return sums
        if graphed is None:
            self.vae_optimizer.zero_grad(set_to_none=True)
            self.critic_optimizer.zero_grad(set_to_none=True)
            try:
                graphed = GraphedStep(partial(self._optimise, capturing=True), x, eps, shift)
            except Exception as exc:  # noqa: BLE001 - failures vary; eager re-raises real bugs
                _warn_fallback("CUDA graph capture", exc, "without graphs")
                self._graphs = None
                return self._optimise(x, eps, shift)
            self._graphs[size] = graphed
        return graphed(x, eps, shift)

    def _optimise(self, x, eps, shift, capturing=False):
        """One step of both optimisers; returns the loss sums. A failing compiled loss falls
        back to the eager one with a warning (not under capture, where gradients are None).
        """
        config = self.config
        with_critic = self.trains_critic
        args = (x, eps, shift, config.estimator, config.alpha, config.beta, with_critic)
        while True:
            loss_function = self._loss_function()
            try:
                if not capturing:
                    # First: a compiled backward that failed half-way leaves no trace.
                    self.vae_optimizer.zero_grad(set_to_none=True)
                    self.critic_optimizer.zero_grad(set_to_none=True)
                objective, sums = loss_function(*args)
                optimizers = (self.vae_optimizer, self.critic_optimizer)[:1 + with_critic]
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
                _warn_fallback("torch.compile", exc, "without compiling")
                self._compile_failed, self._compiled = True, None

    def _train_epoch(self, rows, cpu_gen, noise_gen, interrupt):
        """One epoch (less on interrupt): its summary, and whether the weights are finite.

        One host sync: a NaN in any step's losses reaches the sums on the device.
        """
        self._set_train(True)
        totals = torch.zeros(3, dtype=torch.float32, device=self.device)
        for x in rows.batches(self.config.batch_size, cpu_gen):
            if interrupt.requested:
                break
            shift = derangement_shift(x.shape[0], cpu_gen)
            eps = torch.randn((x.shape[0], self.n_components), generator=noise_gen,
                              dtype=torch.float32, device=self.device)
            totals += self._step(x, eps, shift)
        *sums, weight_sum = torch.cat([totals, self._weight_sum().reshape(1)]).tolist()
        return self._summary(sums, rows.n_rows, self.trains_critic), math.isfinite(weight_sum)

    @torch.no_grad()
    def _weight_sum(self):
        """Sum of every weight: finite exactly when all of them are (short of overflow)."""
        return torch.stack([p.sum() for m in self._modules() for p in m.parameters()]).sum()

    def _summary(self, sums, n_samples, with_mi=True):
        recon, kl, mi = (s / n_samples for s in sums)
        if self.units is not None:  # NLL in the data's units: the Jacobian of standardising
            recon += self.units.log_scale_sum
        loss = recon + self.config.beta * kl - (self.config.alpha * mi if with_mi else 0.0)
        return {"loss": loss, "reconstruction": recon, "kl": kl,
                "mi": mi if with_mi else math.nan}

    def _weights(self):
        """Every module's weights and buffers as one-member views (for EarlyStopping)."""
        return [t.unsqueeze(0) for m in self._modules() for t in m.state_dict().values()]

    def _checkpoint(self):
        """Copies of everything a training call changes: weights, optimiser states, streams."""
        optimizers = (self.vae_optimizer, self.critic_optimizer, self.scaler)
        return {
            "modules": [copy.deepcopy(m.state_dict()) for m in self._modules()],
            "optimizers": [o if o is None else copy.deepcopy(o.state_dict()) for o in optimizers],
            "rng_state": self.rng_state,
            "n_epochs": len(self.history),
            "score_critic": self.score_critic,
        }

    def _restore(self, checkpoint):
        for module, state in zip(self._modules(), checkpoint["modules"]):
            module.load_state_dict(state)
        optimizers = (self.vae_optimizer, self.critic_optimizer, self.scaler)
        if any(state is None for state in checkpoint["optimizers"][:2]):
            self.vae_optimizer = self.critic_optimizer = self.scaler = None  # built at first use
        else:
            for optimizer, state in zip(optimizers, checkpoint["optimizers"]):
                if optimizer is not None and state is not None:
                    optimizer.load_state_dict(state)
        self.rng_state = checkpoint["rng_state"]
        self.score_critic = checkpoint["score_critic"]
        del self.history[checkpoint["n_epochs"]:]

    def _divergence_message(self, epoch, what):
        config = self.config
        return (
            f"Training diverged in epoch {epoch}: {what} became NaN or infinite. Likely causes: "
            f"a learning rate too high for this data (learning_rate={config.learning_rate:g}, "
            f"critic_learning_rate={config.critic_learning_rate:g}), an alpha "
            f"({config.alpha:g}) large enough for the MI term to run away, or inputs the "
            "networks cannot take as they are (unscaled X with likelihood='bernoulli', "
            "custom networks). Lower them and train again."
        )

    def train(self, X, n_epochs, X_valid=None, stream=False):
        """Train up to ``n_epochs`` epochs; appends to and returns :attr:`history`.

        Streams go on where the last call stopped, so calls act as one run. ``X_valid``
        early-stops and restores the best epoch. Divergence raises :class:`TrainingDiverged`
        and restores the engine as before the call, unless ``X_valid`` has a finite best
        epoch, which is kept (with a RuntimeWarning). Ctrl-C is re-raised after the current
        step; completed epochs stay (none completed: the engine is as before the call).
        """
        config = self.config
        rows = self._rows(X, stream)  # input errors first, before any state changes
        valid = None if X_valid is None else self._rows(X_valid, stream, "X_valid")
        checkpoint = self._checkpoint()
        self.score_critic = None  # of the encoder before this call
        with deferred_interrupt() as interrupt:
            # Graphs bake in this call's alpha, beta and learning rates.
            self._graphs, self._warmups = ({}, {}) if self._use_graphs() else (None, None)
            self._configure_optimizers()
            cpu_gen, noise_gen = generators(self.seed, self.device, self.rng_state)
            stopping = None
            if valid is not None:
                stopping = EarlyStopping(self._weights(), config.n_iter_no_change, config.tol)
            try:
                diverged = self._epochs(n_epochs, rows, valid, stopping, cpu_gen, noise_gen,
                                        interrupt)
            except KeyboardInterrupt:  # raised inside a step: no deferral (not the main thread)
                interrupt.requested = True
                diverged = None
                if not math.isfinite(self._weight_sum().item()):
                    diverged = (len(self.history) + 1, "the weights")
            finally:
                self._release_graphs()
        self.rng_state = _generator_state(cpu_gen, noise_gen)
        self._set_train(False)
        completed = len(self.history) - checkpoint["n_epochs"]
        if diverged is not None:
            self._after_divergence(checkpoint, stopping, completed, *diverged)
        elif stopping is not None:
            stopping.restore()
        if interrupt.requested:
            if completed == 0:
                self._restore(checkpoint)
            warnings.warn(
                f"Training interrupted: {completed} epoch(s) of this call completed and kept"
                + ("." if completed else "; the model is as it was before the call."),
                RuntimeWarning, stacklevel=2,
            )
            raise KeyboardInterrupt
        return self.history

    def _epochs(self, n_epochs, rows, valid, stopping, cpu_gen, noise_gen, interrupt):
        """The epoch loop; returns ``(epoch, what)`` when training diverged, else None."""
        first_epoch = len(self.history) + 1
        epochs = range(first_epoch, first_epoch + n_epochs)
        with tqdm(epochs, desc="InfoMaxVAE", unit="epoch", disable=not self.config.verbose) as bar:
            for epoch in bar:
                summary, weights_finite = self._train_epoch(rows, cpu_gen, noise_gen, interrupt)
                if not weights_finite:
                    return epoch, "the weights"
                if not all(map(math.isfinite, self._estimated(summary))):
                    return epoch, "the loss"
                if interrupt.requested:  # mid-epoch: the epoch is not recorded
                    return None
                record = {"epoch": epoch, **summary}
                if valid is not None:
                    scores = self._evaluate_rows(valid, self.trains_critic, self.critic)
                    record.update({f"valid_{k}": v for k, v in scores.items()})
                    if not math.isfinite(record["valid_loss"]):
                        return epoch, "the validation loss"
                self.history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", mi=f"{record['mi']:.3g}")
                if stopping is not None:
                    stopping.update(-record["valid_loss"])
                    if bool(stopping.stopped):
                        return None
        return None

    def _release_graphs(self):
        if self._graphs is not None:
            # Release the graphs' memory pools; their gradient buffers go with them.
            self._graphs = self._warmups = None
            self.vae_optimizer.zero_grad(set_to_none=True)
            self.critic_optimizer.zero_grad(set_to_none=True)

    def _after_divergence(self, checkpoint, stopping, completed, epoch, what):
        message = self._divergence_message(epoch, what)
        if stopping is None or completed == 0:
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
        """Train the critic that score uses afresh on the frozen encoder's draws for X.

        The same protocol at every alpha, so that held-out bounds compare across a grid:
        the critic is re-initialised under the engine's seed; of at most
        ``SCORE_CRITIC_ROWS`` rows of X (at random) a fifth (at most ``VALIDATION_PAIRS``
        rows, which bound the early-stopping score's pairs anyway) early-stops and the rest
        train on posterior draws from parameters computed once
        (the critic trainer: at most ``SCORE_CRITIC_EPOCHS`` epochs, and at most
        ``SCORE_CRITIC_STEP_SHARE`` of the steps that ``n_epochs`` VAE epochs over X took).
        It is kept apart from the critic trained alongside (the training state) until the
        next training call.
        """
        # Children 0-4 of the seed are mi_bounds(refit_critic=True)'s.
        split_seed, *seeds = spawn_seeds(self.seed, 9)[5:]
        order = np.random.default_rng(split_seed).permutation(X.shape[0])[:SCORE_CRITIC_ROWS]
        n_valid = max(2, min(len(order) // 5, VALIDATION_PAIRS))
        vae_steps = n_epochs * max(1, X.shape[0] // self.config.batch_size)
        local = torch.arange(len(order), device=self.device)  # rows in a random order
        self._set_train(False)
        scorer = copy.deepcopy(self.critic)
        X = self._tensor(X[order])
        with self._autocast():
            source = CachedPosterior.of(self.encoder, X, EVAL_CHUNK)
        train_fresh_critic(
            scorer, X, source, local[n_valid:], local[:n_valid],
            estimator=self.config.estimator, batch_size=self.config.batch_size,
            learning_rate=self.config.critic_learning_rate, max_iter=SCORE_CRITIC_EPOCHS,
            max_steps=int(SCORE_CRITIC_STEP_SHARE * vae_steps), seeds=seeds,
            cap=self.critic_cap, verbose=self.config.verbose)
        self.score_critic = scorer

    # -- saved state --------------------------------------------------------
    def _named_modules(self):
        modules = {"encoder": self.encoder, "decoder": self.decoder, "critic": self.critic,
                   "likelihood": self.likelihood}
        if self.score_critic is not None:
            modules["score_critic"] = self.score_critic
        return modules

    def _named_optimizers(self):
        return {"vae_optimizer": self.vae_optimizer, "critic_optimizer": self.critic_optimizer}

    def state_tensors(self):
        """Every tensor training needs to resume, by name (not copied): ``<module>.<key>``,
        ``<optimizer>.state.<parameter index>.<key>``, ``rng.cpu`` / ``rng.noise``, ``units.*``.
        """
        tensors = {
            f"{name}.{key}": tensor
            for name, module in self._named_modules().items()
            for key, tensor in module.state_dict().items()
        }
        for name, optimizer in self._named_optimizers().items():
            if optimizer is not None:
                for index, state in optimizer.state_dict()["state"].items():
                    tensors.update({f"{name}.state.{index}.{k}": t for k, t in state.items()})
        if self.rng_state is not None:
            tensors["rng.cpu"], tensors["rng.noise"] = self.rng_state
        if self.units is not None:
            tensors.update({f"units.{k}": torch.from_numpy(np.asarray(v))
                            for k, v in self.units.state().items()})
        return tensors

    def state_metadata(self):
        """Everything else :meth:`from_state` needs, as plain Python values."""
        if self.spec is None:
            raise ValueError("Only an engine made by Engine.build can be saved (it needs a spec).")
        return {
            "spec": asdict(self.spec),
            "config": asdict(self.config),
            "seed": self.seed,
            "device": str(self.device),
            "cuda_graphs": self.cuda_graphs,
            "critic_cap": self.critic_cap,
            "history": self.history,
            "optimizers": self.vae_optimizer is not None,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }

    @classmethod
    def from_state(cls, metadata, tensors, *, device, encoder=None, decoder=None, critic=None):
        """The engine :meth:`state_metadata` and :meth:`state_tensors` describe, on ``device``.

        Training resumes exactly on the same kind of device; on another the noise stream
        restarts from the seed (CPU and CUDA generators share no state).
        """
        spec = NetworkSpec(**metadata["spec"])
        seed = metadata["seed"]
        with seeded(seed):
            networks = build_networks(spec, encoder, decoder, critic)
        units = None
        if "units.center" in tensors:
            units = InputUnits(**{k: tensors[f"units.{k}"].cpu().numpy()
                                  for k in ("center", "scale", "feature_variance", "constant")})
        # Placeholder variances: every value of the likelihood is then loaded.
        likelihood = build_likelihood(spec.likelihood, np.ones(spec.n_features))
        engine = cls(*networks, likelihood, device=device, seed=seed, units=units,
                     config=TrainingConfig(**_current_config_names(metadata["config"])),
                     code_sizes=(spec.n_components, spec.n_info_components),
                     cuda_graphs=metadata["cuda_graphs"])
        engine.spec, engine.history = spec, list(metadata["history"])
        # Files written before critics were capped: their models keep their uncapped bound.
        engine.critic_cap = metadata.get("critic_cap")
        if any(name.startswith("score_critic.") for name in tensors):
            engine.score_critic = copy.deepcopy(engine.critic)
        for name, module in engine._named_modules().items():
            module.load_state_dict(_with_prefix(tensors, f"{name}."), strict=True)
        if metadata["optimizers"]:
            engine._configure_optimizers()  # this device's fused / capturable flags
            for name, optimizer in engine._named_optimizers().items():
                state = _with_prefix(tensors, f"{name}.state.")
                per_parameter = {}
                for key, tensor in state.items():
                    index, entry = key.split(".", 1)
                    per_parameter.setdefault(int(index), {})[entry] = tensor
                optimizer.load_state_dict({"state": per_parameter,
                                           "param_groups": optimizer.state_dict()["param_groups"]})
            if metadata["scaler"] is not None and engine.scaler is not None:
                engine.scaler.load_state_dict(metadata["scaler"])
        if "rng.cpu" in tensors:
            noise = tensors["rng.noise"]
            if torch.device(metadata["device"]).type != engine.device.type:
                noise = torch.Generator(device=engine.device).manual_seed(seed).get_state()
            engine.rng_state = (tensors["rng.cpu"], noise)
            generators(seed, engine.device, engine.rng_state)  # a bad state fails here, not in fit
        return engine

    # -- evaluation ---------------------------------------------------------
    def _held_out_batches(self, rows):
        """Fixed batches with posterior means, log-variances and codes (noise from the seed)."""
        self._set_train(False)
        _, noise_gen = generators(self.seed, self.device)
        for x in rows.batches(self.config.batch_size):
            eps = torch.randn((x.shape[0], self.n_components), generator=noise_gen,
                              dtype=torch.float32, device=self.device)
            with self._autocast():
                mean, log_var, c = (t.float() for t in self.encoder(x))
                yield x, mean, log_var, codes_from_noise(mean, log_var, c, eps)

    @property
    def scoring_critic(self):
        """The critic held-out bounds use: trained apart if it was, else the one alongside."""
        return self.critic if self.score_critic is None else self.score_critic

    @torch.no_grad()
    def _evaluate_batches(self, rows, with_mi=True, critic=None):
        """Per-sample reconstruction NLL and KL, per-batch MI bounds (``pairs="blocks"``: the
        training bound with far less variance; zeros without ``with_mi``) of ``critic``
        (default: the scoring critic) and batch sizes.
        """
        estimator = self.config.estimator
        critic = self.scoring_critic if critic is None else critic
        recons, kls, mis, sizes = [], [], [], []
        for x, mean, log_var, codes in self._held_out_batches(rows):
            with self._autocast():
                recons.append(self.likelihood.nll(x, self.decoder(codes).float()))
                kls.append(gaussian_kl(mean, log_var))
                mis.append(bound(SingleCritic(critic), x[None], codes[None], estimator,
                                 "blocks", cap=self.critic_cap)[0] if with_mi
                           else recons[-1].new_zeros(()))
            sizes.append(x.shape[0])
        return torch.cat(recons), torch.cat(kls), torch.stack(mis), np.asarray(sizes)

    @torch.no_grad()
    def marginal_tail(self, X):
        """For warnings: the held-out NWJ / DV bound's pairs on X, how many carry half of its
        marginal term, and the largest critic output among them.
        """
        terms = []
        for x, _, _, codes in self._held_out_batches(self._rows(X)):
            with self._autocast():
                terms.append(marginal_terms(SingleCritic(self.scoring_critic), x[None], codes[None],
                                            self.critic_cap).double().cpu())
        terms = torch.cat(terms).sort(descending=True).values
        half = int(torch.searchsorted(terms.cumsum(0), 0.5 * terms.sum())) + 1
        return {"n_pairs": terms.numel(), "n_half": half,
                "max_output": 1.0 + float(terms[0].log())}

    def _evaluate_rows(self, rows, with_mi=True, critic=None):
        recon, kl, mi, sizes = self._evaluate_batches(rows, with_mi, critic)
        mi_sum = float(mi.cpu().double() @ torch.as_tensor(sizes, dtype=torch.float64))
        return self._summary([recon.sum().item(), kl.sum().item(), mi_sum], rows.n_rows,
                             with_mi)

    def _estimated(self, summary):
        """The values of an epoch's summary that were estimated (not the MI without a critic)."""
        return [v for k, v in summary.items() if k != "mi" or self.trains_critic]

    def evaluate(self, X, stream=False):
        """Per-sample means of reconstruction NLL, KL, MI bound, loss; ValueError if not finite."""
        summary = self._evaluate_rows(self._rows(X, stream))
        _check_finite(summary.values(), "the losses")
        return summary

    def mi_batches(self, X, stream=False):
        """Per-batch MI bounds and batch sizes; their weighted mean is ``evaluate(X)["mi"]``."""
        _, _, mi, sizes = self._evaluate_batches(self._rows(X, stream))
        mi = mi.cpu().numpy().astype(float)
        _check_finite(mi, "the MI bounds")
        return mi, sizes

    def kl_per_dimension(self, X, stream=False):
        """KL(q(z|x) || N(0, I)) per sample and z dimension, shape ``(n, n_components)``."""
        (kl,) = self._chunked(lambda x: (gaussian_kl(*self.encoder(x)[:2], per_dimension=True),),
                              self._rows(X, stream), "the KL terms")
        return kl

    @torch.no_grad()
    def _chunked(self, function, rows, what):
        """Apply ``function`` in fixed-shape chunks of ``rows``; a tuple of finite numpy arrays."""
        self._set_train(False)
        with self._autocast():
            parts = [[t.float() for t in function(chunk)] for chunk in rows.chunks(EVAL_CHUNK)]
        outputs = tuple(torch.cat(p)[: rows.n_rows].cpu().numpy() for p in zip(*parts))
        _check_finite(outputs, what)
        return outputs

    def encode(self, X, stream=False):
        """Posterior means, log-variances and info codes (numpy); ValueError if not finite."""
        return self._chunked(self.encoder, self._rows(X, stream), "the codes")

    def decode(self, codes, stream=False):
        """Decoder means of codes ``[z, c]`` in the data's units; ValueError if not finite."""
        (out,) = self._chunked(lambda c: (self.likelihood.mean(self.decoder(c)),),
                               _Rows(codes, self.device, stream, what="the codes"),
                               "the decoder's means")
        return out if self.units is None else self.units.restore(out)
