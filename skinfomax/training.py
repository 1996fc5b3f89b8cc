"""The training engine: batches on the device, two optimisers, a history.

The engine works on numpy arrays in and out and on torch modules inside; it
knows nothing of scikit-learn. One training step makes one forward pass and
one backward pass that serve both players:

- the VAE minimises  recon + beta * KL - alpha * I_hat  (critic held fixed),
- the critic maximises  I_hat  (VAE held fixed).

Both want I_hat larger, so the gradients of the single scalar
``recon + beta * KL - I_hat`` are exactly the two players' gradients once the
gradient that flows from I_hat back into the encoder is scaled by alpha
(``_ScaleGradient``). This equals the reference designs' alternating scheme
with the critic stepped on detached codes of the same batch, at half the cost.
Gradient flows into the encoder through both the joint and the shifted codes:
the encoder follows the gradient of the whole bound.

Speed: data that fits is moved to the device once and batched by indexing
it with a permutation (no DataLoader); a numpy memmap is instead streamed
from the host one batch at a time. Loss sums stay on the device (one host
sync per epoch). On CUDA the whole step of the built-in networks is
captured once as a CUDA graph and replayed (:mod:`skinfomax.graphs`): the
host's per-kernel launch cost, not the GPU, bounds eager steps at these
sizes. Optional: mixed precision (``precision``), a compiled loss
(``compile``), and fused Adam kernels wherever torch has them.
"""

import contextlib
import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .estimation import (
    PosteriorCodes,
    batch_bounds,
    critic_bound,
    fit_critic,
    generators,
    codes_from_noise,
)
from .graphs import GraphedStep
from .networks import check_networks
from .objectives import derangement_shift, gaussian_kl

__all__ = [
    "PRECISIONS",
    "Engine",
    "TrainingConfig",
    "resolve_device",
    "seeded",
    "torch_threads",
]

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Rows per forward pass of encode/decode. Every pass gets exactly this many
# rows (the last one zero-padded): BLAS picks kernels by matrix shape, so a
# fixed shape makes each row's result independent of which other rows were
# sent along, bit for bit (transform(X)[i] == transform(X[i:i+1])[0]).
EVAL_CHUNK = 512

# Eager steps per batch shape before a CUDA graph is captured (lazy init happens in them).
_GRAPH_WARMUP_STEPS = 3


def resolve_device(spec):
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` (or a torch.device) into a device.

    Raises ValueError, naming the request, when that device is not available.
    """
    if isinstance(spec, str) and spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={spec!r} is not a valid torch device: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={spec!r} was requested but CUDA is not available here.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={spec!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) exist."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={spec!r} was requested but MPS is not available here.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={spec!r} is not supported; use 'cpu', 'cuda[:N]' or 'mps'.")
    return device


@contextlib.contextmanager
def torch_threads(n_threads):
    """Use ``n_threads`` torch threads inside the block and restore the caller's setting."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded(seed):
    """Seed torch's global CPU generator inside the block, restoring the caller's state.

    Module constructors draw their initial weights from the global generator;
    this makes them repeatable without touching the user's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


@dataclass(frozen=True)
class TrainingConfig:
    """Everything one call of :meth:`Engine.train` needs besides data."""

    alpha: float
    beta: float
    mi_estimator: str
    batch_size: int
    max_iter: int
    learning_rate: float
    critic_learning_rate: float
    n_iter_no_change: int = 10
    tol: float = 1e-4
    verbose: int = 0


_generators = generators


def _generator_state(cpu, noise):
    return (cpu.get_state(), noise.get_state())


def _warn_fallback(what, exc, how):
    """Warn that an optional speed-up failed and training goes on without it."""
    warnings.warn(
        f"{what} failed ({type(exc).__name__}: {str(exc)[:200]}); training continues {how}.",
        RuntimeWarning,
        stacklevel=5,  # the user's fit / partial_fit call
    )


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
    """Rows of X, either resident on the device or streamed from a host array.

    Resident: one transfer; a contiguous writable float32 array is shared,
    not copied (the caller's array is only read). Streamed (for a numpy
    memmap, or any array that should not be copied whole): each batch is
    gathered on the host and sent on its own, so memory holds one batch.
    """

    def __init__(self, X, device, stream=False):
        self.device, self.n_rows = device, X.shape[0]
        if stream:
            self.host, self.tensor = X, None
        else:
            X = np.require(X, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])
            self.host, self.tensor = None, torch.from_numpy(X).to(device)

    def _send(self, rows):
        # One batch: copied when read-only (a memmap), so torch may own it.
        rows = np.require(rows, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])
        return torch.from_numpy(rows).to(self.device, non_blocking=self.device.type == "cuda")

    @property
    def index_device(self):
        """Where :meth:`take` wants its indices: next to the rows."""
        return self.device if self.tensor is not None else torch.device("cpu")

    def take(self, index):
        """Rows at ``index`` (an int64 tensor on :attr:`index_device`), on the device."""
        if self.tensor is not None:
            return self.tensor[index]
        return self._send(self.host[index.numpy()])

    def slices(self, n_parts):
        """Consecutive, nearly equal slices of the rows, on the device."""
        if self.tensor is not None:
            return self.tensor.tensor_split(n_parts)
        # The same split as torch.tensor_split: the first n % k parts get one more row.
        size, extra = divmod(self.n_rows, n_parts)
        bounds = np.cumsum([0] + [size + (i < extra) for i in range(n_parts)])
        return (self._send(self.host[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))

    def chunks(self, size):
        """Consecutive chunks of exactly ``size`` rows (the last zero-padded), on the device."""
        for start in range(0, self.n_rows, size):
            if self.tensor is not None:
                chunk = self.tensor[start : start + size]
            else:
                chunk = self._send(self.host[start : start + size])
            if chunk.shape[0] < size:
                chunk = torch.cat([chunk, chunk.new_zeros(size - chunk.shape[0], *chunk.shape[1:])])
            yield chunk


class Engine:
    """Trains and evaluates an InfoMax VAE.

    Parameters
    ----------
    encoder, decoder, critic : torch.nn.Module
        See :mod:`skinfomax.networks` for their interfaces.
    likelihood : torch.nn.Module
        Has ``nll(x, decoder_output)`` and ``mean(decoder_output)``.
    device : torch.device
    precision : {"float32", "bfloat16", "float16"}
        Autocast dtype of the networks' matrix work. Losses, the likelihood's
        variances and the weights stay float32; "float16" adds loss scaling.
    compile : bool
        Compile the loss (forward; backward by AOTAutograd) with
        ``torch.compile``. If compiling fails, training goes on uncompiled
        with a warning.
    code_sizes : (int, int) or None
        Sizes of z and c. None reads them from an :class:`~skinfomax.networks.Encoder`;
        custom encoders need them given.
    """

    def __init__(self, encoder, decoder, critic, likelihood, device, precision="float32",
                 compile=False, code_sizes=None, cuda_graphs=True):
        if code_sizes is None:
            n_z, _, n_c = encoder.split_sizes
            code_sizes = (n_z, n_c)
        self.n_components, self.n_info_components = code_sizes
        self.encoder, self.decoder = encoder.to(device), decoder.to(device)
        self.critic, self.likelihood = critic.to(device), likelihood.to(device)
        self.device = device
        self.precision, self.compile = precision, compile
        self.cuda_graphs = cuda_graphs
        self.vae_optimizer = self.critic_optimizer = self.scaler = None
        self.rng_state = None  # generator states where the last training call stopped
        self._compiled = None
        self._graphs = None  # {batch size: GraphedStep} during a train call on CUDA

    # Compiled functions and CUDA graphs do not pickle; they are rebuilt on use.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = state["_graphs"] = None
        return state

    def __setstate__(self, state):
        state.setdefault("cuda_graphs", True)
        state.setdefault("_graphs", None)
        self.__dict__.update(state)

    def _use_graphs(self):
        # Loss scaling (float16) checks for infs on the host every step: not capturable.
        return self.cuda_graphs and self.device.type == "cuda" and self.precision != "float16"

    def _tensor(self, X):
        """X as a float32 tensor on the device (shares a float32 array's memory)."""
        return _Rows(X, self.device).tensor

    def check_networks(self, X, n_components, n_info_components):
        """Dry forward pass of all three networks on the first 2 rows of X.

        Raises ValueError (TypeError for a critic without the Critic methods)
        naming the module whose output does not fit; see
        :func:`skinfomax.networks.check_networks`.
        """
        check_networks(
            self.encoder, self.decoder, self.critic, self._tensor(X[:2]),
            n_components, n_info_components,
        )

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

    def mi_bound(self, x, codes, estimator, shift):
        """The chosen lower bound on I(x; codes) for one batch (a scalar tensor)."""
        return critic_bound(self.critic, x, codes, estimator, shift)

    def _terms_from_noise(self, x, eps, shift, estimator, mi_gradient_scale=1.0):
        # Matrix work under autocast; everything summed over features or
        # exponentiated (likelihood, KL, bounds) in float32.
        with self._autocast():
            mean, log_var, c = (t.float() for t in self.encoder(x))
            codes = codes_from_noise(mean, log_var, c, eps)
            recon = self.likelihood.nll(x, self.decoder(codes).float())
            kl = gaussian_kl(mean, log_var)
            mi = self.mi_bound(
                x, _ScaleGradient.apply(codes, mi_gradient_scale), estimator, shift
            )
        return recon, kl, mi

    def _terms(self, x, estimator, shift, noise, mi_gradient_scale=1.0):
        """Per-sample reconstruction NLL and KL, and the batch MI bound."""
        n_z = self.n_components
        eps = torch.randn((x.shape[0], n_z), generator=noise, device=x.device)
        return self._terms_from_noise(x, eps, shift, estimator, mi_gradient_scale)

    def _step_loss(self, x, eps, shift, estimator, alpha, beta):
        """The training objective and the batch's loss sums (the compiled unit)."""
        recon, kl, mi = self._terms_from_noise(x, eps, shift, estimator, alpha)
        objective = recon.mean() + beta * kl.mean() - mi
        sums = torch.stack([recon.sum(), kl.sum(), mi * x.shape[0]]).detach()
        return objective, sums

    def _loss_function(self):
        if not self.compile:
            return self._step_loss
        if self._compiled is None:
            self._compiled = torch.compile(self._step_loss)
        return self._compiled

    @staticmethod
    def _batches(rows, batch_size, generator):
        # floor(n / batch_size) nearly equal batches: none smaller than
        # batch_size, so every batch has >= 2 rows for the shifted pairs. The
        # permutation goes to where the rows are in one transfer per epoch.
        order = torch.randperm(rows.n_rows, generator=generator).to(rows.index_device)
        return order.tensor_split(max(1, rows.n_rows // batch_size))

    def _configure_optimizers(self, config):
        if self.vae_optimizer is None:
            fused = {"fused": True} if _fused_adam_available(self.device) else {}
            if self._use_graphs():
                fused["capturable"] = True  # step counts on the device
            vae_params = [p for m in self._vae_modules() for p in m.parameters()]
            self.vae_optimizer = torch.optim.Adam(vae_params, lr=config.learning_rate, **fused)
            self.critic_optimizer = torch.optim.Adam(
                self.critic.parameters(), lr=config.critic_learning_rate, **fused
            )
        if self.scaler is None and self.precision == "float16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        for optimizer, lr in (
            (self.vae_optimizer, config.learning_rate),
            (self.critic_optimizer, config.critic_learning_rate),
        ):
            for group in optimizer.param_groups:
                group["lr"] = lr

    # -- training -----------------------------------------------------------
    def _step(self, x, shift, eps, config):
        if self._graphs is not None:
            return self._graphed_step(x, shift, eps, config)
        return self._eager_step(x, shift, eps, config)

    def _graphed_step(self, x, shift, eps, config):
        size = x.shape[0]
        graphed = self._graphs.get(size)
        if graphed is None and self._warmups.get(size, 0) < _GRAPH_WARMUP_STEPS:
            # Real steps, run eagerly on a side stream: lazy initialisation
            # (optimiser state, cuBLAS workspaces) must happen outside a capture.
            self._warmups[size] = self._warmups.get(size, 0) + 1
            current, side = torch.cuda.current_stream(self.device), torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                sums = self._eager_step(x, shift, eps, config)
            current.wait_stream(side)
            return sums
        if graphed is None:
            self.vae_optimizer.zero_grad(set_to_none=True)
            self.critic_optimizer.zero_grad(set_to_none=True)
            try:
                graphed = GraphedStep(
                    lambda x, eps, shift: self._optimise_captured(x, eps, shift, config),
                    x, eps, shift,
                )
            except Exception as exc:  # noqa: BLE001 - capture failures vary; eager re-raises real bugs
                _warn_fallback("CUDA graph capture", exc, "without graphs")
                self._graphs = None
                return self._eager_step(x, shift, eps, config)
            self._graphs[size] = graphed
        return graphed(x, eps, shift)

    def _optimise_captured(self, x, eps, shift, config):
        # Gradients are None here, so backward writes them (no zeroing kernels).
        objective, sums = self._loss_function()(
            x, eps, shift, config.mi_estimator, config.alpha, config.beta
        )
        objective.backward()
        self.vae_optimizer.step()
        self.critic_optimizer.step()
        return sums

    def _eager_step(self, x, shift, eps, config):
        args = (x, eps, shift, config.mi_estimator, config.alpha, config.beta)
        if self.compile:
            try:
                return self._optimise(self._loss_function(), args)
            except Exception as exc:  # noqa: BLE001 - compiler failures vary; eager re-raises real bugs
                _warn_fallback("torch.compile", exc, "without compiling")
                self.compile, self._compiled = False, None
        return self._optimise(self._step_loss, args)

    def _optimise(self, loss_function, args):
        # zero_grad first: a compiled backward that failed half-way leaves no trace.
        self.vae_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        objective, sums = loss_function(*args)
        if self.scaler is None:
            objective.backward()
            self.vae_optimizer.step()
            self.critic_optimizer.step()
        else:
            self.scaler.scale(objective).backward()
            self.scaler.step(self.vae_optimizer)
            self.scaler.step(self.critic_optimizer)
            self.scaler.update()
        return sums

    def _train_epoch(self, rows, config, cpu_gen, noise_gen):
        self._set_train(True)
        totals = torch.zeros(3, device=self.device)  # recon, kl, mi (sums over samples)
        n_z = self.n_components
        for idx in self._batches(rows, config.batch_size, cpu_gen):
            x = rows.take(idx)
            shift = derangement_shift(x.shape[0], cpu_gen)
            eps = torch.randn((x.shape[0], n_z), generator=noise_gen, device=self.device)
            # Accumulated on the device: one host sync per epoch, not per step.
            totals += self._step(x, shift, eps, config)
        return self._summary(totals.tolist(), rows.n_rows, config)

    @staticmethod
    def _summary(sums, n_samples, config):
        recon, kl, mi = (s / n_samples for s in sums)
        loss = recon + config.beta * kl - config.alpha * mi
        return {"loss": loss, "reconstruction": recon, "kl": kl, "mi": mi}

    def _state(self):
        return [copy.deepcopy(m.state_dict()) for m in self._modules()]

    def _load_state(self, state):
        for module, module_state in zip(self._modules(), state):
            module.load_state_dict(module_state)

    def train(self, X, config, seed, X_valid=None, history=None, stream=False, resume_rng=False):
        """Train for up to ``config.max_iter`` epochs; returns the history list.

        With ``X_valid``, training stops once the validation loss has not
        improved by ``config.tol`` for ``config.n_iter_no_change`` epochs, and
        the weights of the best epoch are restored. ``stream=True`` keeps X
        on the host and sends one batch at a time. ``resume_rng=True`` goes on
        with the random streams where the previous call stopped, so that
        successive calls on chunks act as one longer run.
        """
        history = [] if history is None else history
        # Graphs bake in this call's alpha, beta and learning rates: captured afresh per call.
        self._graphs, self._warmups = ({}, {}) if self._use_graphs() else (None, None)
        self._configure_optimizers(config)
        cpu_gen, noise_gen = _generators(
            seed, self.device, self.rng_state if resume_rng else None
        )
        rows = _Rows(X, self.device, stream)
        valid = None if X_valid is None else _Rows(X_valid, self.device, stream)
        best_loss, best_state, stale = math.inf, None, 0
        first_epoch = len(history) + 1
        epochs = range(first_epoch, first_epoch + config.max_iter)
        with tqdm(epochs, desc="InfoMaxVAE", unit="epoch", disable=not config.verbose) as bar:
            for epoch in bar:
                record = {"epoch": epoch, **self._train_epoch(rows, config, cpu_gen, noise_gen)}
                if valid is not None:
                    scores = self._evaluate_rows(valid, config, seed)
                    record.update({f"valid_{k}": v for k, v in scores.items()})
                history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", mi=f"{record['mi']:.3g}")
                if valid is None:
                    continue
                if record["valid_loss"] < best_loss - config.tol:
                    best_loss, best_state, stale = record["valid_loss"], self._state(), 0
                else:
                    stale += 1
                    if stale >= config.n_iter_no_change:
                        break
        if self._graphs is not None:
            # Release the graphs' memory pools; their gradient buffers go with them.
            self._graphs = self._warmups = None
            self.vae_optimizer.zero_grad(set_to_none=True)
            self.critic_optimizer.zero_grad(set_to_none=True)
        if best_state is not None:
            self._load_state(best_state)
        self.rng_state = _generator_state(cpu_gen, noise_gen)
        self._set_train(False)
        return history

    # -- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def _evaluate_batches(self, rows, config, seed):
        """Per-sample reconstruction NLL and KL, and per-batch MI bounds (tensors)."""
        self._set_train(False)
        cpu_gen, noise_gen = _generators(seed, self.device)
        recons, kls, mis = [], [], []
        # Fixed, unshuffled batches: the estimate is repeatable for fixed data.
        for x in rows.slices(max(1, rows.n_rows // config.batch_size)):
            shift = derangement_shift(x.shape[0], cpu_gen)
            recon, kl, mi = self._terms(x, config.mi_estimator, shift, noise_gen)
            recons.append(recon), kls.append(kl), mis.append(mi.expand(x.shape[0]))
        return torch.cat(recons), torch.cat(kls), torch.cat(mis)

    def _evaluate_rows(self, rows, config, seed):
        terms = self._evaluate_batches(rows, config, seed)
        return self._summary([t.sum().item() for t in terms], rows.n_rows, config)

    def evaluate(self, X, config, seed, stream=False):
        """Per-sample means of reconstruction NLL, KL, the MI bound and the loss."""
        return self._evaluate_rows(_Rows(X, self.device, stream), config, seed)

    def mi_batches(self, X, config, seed):
        """The trained critic's per-batch MI bounds on X and the batch sizes (numpy).

        Same batches, shifts and noise as :meth:`evaluate`, so the
        size-weighted mean of the values is ``evaluate(...)["mi"]``.
        """
        rows = _Rows(X, self.device)
        _, _, mi = self._evaluate_batches(rows, config, seed)
        n_batches = max(1, rows.n_rows // config.batch_size)
        sizes = [len(b) for b in torch.arange(rows.n_rows).tensor_split(n_batches)]
        ends = torch.as_tensor(np.cumsum(sizes) - 1, device=mi.device)
        return mi[ends].cpu().numpy().astype(float), np.asarray(sizes)

    def kl_per_dimension(self, X):
        """KL(q(z|x) || N(0, I)) per sample and z dimension, shape ``(n, n_components)``."""
        (kl,) = self._chunked(
            lambda x: (gaussian_kl(*self.encoder(x)[:2], per_dimension=True),), X
        )
        return kl

    @torch.no_grad()
    def _chunked(self, function, X, stream=False):
        """Apply ``function`` in fixed-shape chunks; returns a tuple of numpy arrays."""
        self._set_train(False)
        rows = _Rows(X, self.device, stream)
        with self._autocast():
            parts = [[t.float() for t in function(chunk)] for chunk in rows.chunks(EVAL_CHUNK)]
        return tuple(torch.cat(p)[: rows.n_rows].cpu().numpy() for p in zip(*parts))

    def encode(self, X, stream=False):
        """Posterior means, log-variances and info codes, as numpy arrays."""
        return self._chunked(self.encoder, X, stream)

    def decode(self, codes, stream=False):
        """Decoder means for codes ``[z, c]``, as a numpy array."""
        (out,) = self._chunked(lambda c: (self.likelihood.mean(self.decoder(c)),), codes, stream)
        return out

    def fresh_critic_batches(self, X_fit, X_valid, X_eval, critic_config, seed):
        """Train a fresh critic on the frozen encoder; its per-batch bounds on ``X_eval``.

        The fresh critic has the trained critic's architecture (MLP, conv or
        the user's own) with re-initialised weights, and sees new posterior
        draws ``[z, c]`` at every step; it is early-stopped on ``X_valid``. The
        encoder, decoder and the trained critic are left untouched.
        """
        X_fit, X_valid, X_eval = (self._tensor(a) for a in (X_fit, X_valid, X_eval))
        self._set_train(False)
        critic = copy.deepcopy(self.critic)
        with seeded(seed):
            for module in critic.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        source = PosteriorCodes(self.encoder)
        fit_critic(critic, X_fit, source, critic_config, seed, X_valid, source)
        return batch_bounds(
            critic, X_eval, source, critic_config.estimator, critic_config.batch_size, seed + 1
        )
