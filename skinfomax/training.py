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
"""

import contextlib
import copy
import math
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
    reparameterise,
)
from .networks import check_networks
from .objectives import derangement_shift, gaussian_kl

__all__ = ["Engine", "TrainingConfig", "resolve_device", "seeded", "torch_threads"]

# Rows per forward pass of encode/decode. Every pass gets exactly this many
# rows (the last one zero-padded): BLAS picks kernels by matrix shape, so a
# fixed shape makes each row's result independent of which other rows were
# sent along, bit for bit (transform(X)[i] == transform(X[i:i+1])[0]).
EVAL_CHUNK = 512


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


class Engine:
    """Trains and evaluates an InfoMax VAE.

    Parameters
    ----------
    encoder, decoder, critic : torch.nn.Module
        See :mod:`skinfomax.networks` for their interfaces.
    likelihood : torch.nn.Module
        Has ``nll(x, decoder_output)`` and ``mean(decoder_output)``.
    device : torch.device
    """

    def __init__(self, encoder, decoder, critic, likelihood, device):
        self.encoder, self.decoder = encoder.to(device), decoder.to(device)
        self.critic, self.likelihood = critic.to(device), likelihood.to(device)
        self.device = device
        self.vae_optimizer = self.critic_optimizer = None

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

    def _tensor(self, X):
        # Writable, contiguous float32 shares memory with the caller's array
        # (read only); anything else is copied once.
        X = np.require(X, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])
        return torch.from_numpy(X).to(self.device)

    def mi_bound(self, x, codes, estimator, shift):
        """The chosen lower bound on I(x; codes) for one batch (a scalar tensor)."""
        return critic_bound(self.critic, x, codes, estimator, shift)

    def _terms(self, x, estimator, shift, noise, mi_gradient_scale=1.0):
        """Per-sample reconstruction NLL and KL, and the batch MI bound."""
        mean, log_var, c = self.encoder(x)
        codes = reparameterise(mean, log_var, c, noise)
        recon = self.likelihood.nll(x, self.decoder(codes))
        kl = gaussian_kl(mean, log_var)
        mi = self.mi_bound(x, _ScaleGradient.apply(codes, mi_gradient_scale), estimator, shift)
        return recon, kl, mi

    def _batches(self, n_samples, batch_size, generator):
        # floor(n / batch_size) nearly equal batches: none smaller than
        # batch_size, so every batch has >= 2 rows for the shifted pairs.
        order = torch.randperm(n_samples, generator=generator).to(self.device)
        return order.tensor_split(max(1, n_samples // batch_size))

    def _configure_optimizers(self, config):
        if self.vae_optimizer is None:
            vae_params = [p for m in self._vae_modules() for p in m.parameters()]
            self.vae_optimizer = torch.optim.Adam(vae_params, lr=config.learning_rate)
            self.critic_optimizer = torch.optim.Adam(
                self.critic.parameters(), lr=config.critic_learning_rate
            )
        for optimizer, lr in (
            (self.vae_optimizer, config.learning_rate),
            (self.critic_optimizer, config.critic_learning_rate),
        ):
            for group in optimizer.param_groups:
                group["lr"] = lr

    # -- training -----------------------------------------------------------
    def _train_epoch(self, X, config, cpu_gen, noise_gen):
        self._set_train(True)
        totals = torch.zeros(3, device=self.device)  # recon, kl, mi (sums over samples)
        for idx in self._batches(X.shape[0], config.batch_size, cpu_gen):
            x = X[idx]
            shift = derangement_shift(x.shape[0], cpu_gen)
            recon, kl, mi = self._terms(x, config.mi_estimator, shift, noise_gen, config.alpha)
            objective = recon.mean() + config.beta * kl.mean() - mi
            self.vae_optimizer.zero_grad(set_to_none=True)
            self.critic_optimizer.zero_grad(set_to_none=True)
            objective.backward()
            self.vae_optimizer.step()
            self.critic_optimizer.step()
            # Accumulated on the device: one host sync per epoch, not per step.
            totals += torch.stack([recon.sum(), kl.sum(), mi * x.shape[0]]).detach()
        return self._summary(totals.tolist(), X.shape[0], config)

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

    def train(self, X, config, seed, X_valid=None, history=None):
        """Train for up to ``config.max_iter`` epochs; returns the history list.

        With ``X_valid``, training stops once the validation loss has not
        improved by ``config.tol`` for ``config.n_iter_no_change`` epochs, and
        the weights of the best epoch are restored.
        """
        history = [] if history is None else history
        self._configure_optimizers(config)
        cpu_gen, noise_gen = _generators(seed, self.device)
        X = self._tensor(X)
        X_valid = None if X_valid is None else self._tensor(X_valid)
        best_loss, best_state, stale = math.inf, None, 0
        first_epoch = len(history) + 1
        epochs = range(first_epoch, first_epoch + config.max_iter)
        with tqdm(epochs, desc="InfoMaxVAE", unit="epoch", disable=not config.verbose) as bar:
            for epoch in bar:
                record = {"epoch": epoch, **self._train_epoch(X, config, cpu_gen, noise_gen)}
                if X_valid is not None:
                    valid = self._evaluate_tensor(X_valid, config, seed)
                    record.update({f"valid_{k}": v for k, v in valid.items()})
                history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", mi=f"{record['mi']:.3g}")
                if X_valid is None:
                    continue
                if record["valid_loss"] < best_loss - config.tol:
                    best_loss, best_state, stale = record["valid_loss"], self._state(), 0
                else:
                    stale += 1
                    if stale >= config.n_iter_no_change:
                        break
        if best_state is not None:
            self._load_state(best_state)
        self._set_train(False)
        return history

    # -- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def _evaluate_batches(self, X, config, seed):
        """Per-sample reconstruction NLL and KL, and per-batch MI bounds (tensors)."""
        self._set_train(False)
        cpu_gen, noise_gen = _generators(seed, self.device)
        recons, kls, mis = [], [], []
        # Fixed, unshuffled batches: the estimate is repeatable for fixed data.
        for x in X.tensor_split(max(1, X.shape[0] // config.batch_size)):
            shift = derangement_shift(x.shape[0], cpu_gen)
            recon, kl, mi = self._terms(x, config.mi_estimator, shift, noise_gen)
            recons.append(recon), kls.append(kl), mis.append(mi.expand(x.shape[0]))
        return torch.cat(recons), torch.cat(kls), torch.cat(mis)

    def _evaluate_tensor(self, X, config, seed):
        terms = self._evaluate_batches(X, config, seed)
        return self._summary([t.sum().item() for t in terms], X.shape[0], config)

    def evaluate(self, X, config, seed):
        """Per-sample means of reconstruction NLL, KL, the MI bound and the loss."""
        return self._evaluate_tensor(self._tensor(X), config, seed)

    def mi_batches(self, X, config, seed):
        """The trained critic's per-batch MI bounds on X and the batch sizes (numpy).

        Same batches, shifts and noise as :meth:`evaluate`, so the
        size-weighted mean of the values is ``evaluate(...)["mi"]``.
        """
        X = self._tensor(X)
        _, _, mi = self._evaluate_batches(X, config, seed)
        sizes = [len(b) for b in X.tensor_split(max(1, X.shape[0] // config.batch_size))]
        ends = torch.as_tensor(np.cumsum(sizes) - 1, device=mi.device)
        return mi[ends].cpu().numpy().astype(float), np.asarray(sizes)

    def kl_per_dimension(self, X):
        """KL(q(z|x) || N(0, I)) per sample and z dimension, shape ``(n, n_components)``."""
        (kl,) = self._chunked(
            lambda x: (gaussian_kl(*self.encoder(x)[:2], per_dimension=True),), X
        )
        return kl

    @torch.no_grad()
    def _chunked(self, function, X):
        """Apply ``function`` in fixed-shape chunks; returns a tuple of numpy arrays."""
        self._set_train(False)
        X = self._tensor(X)
        n_rows = X.shape[0]
        padded = torch.cat([X, X.new_zeros(-n_rows % EVAL_CHUNK, *X.shape[1:])])
        parts = [function(chunk) for chunk in padded.split(EVAL_CHUNK)]
        return tuple(torch.cat(p)[:n_rows].cpu().numpy() for p in zip(*parts))

    def encode(self, X):
        """Posterior means, log-variances and info codes, as numpy arrays."""
        return self._chunked(self.encoder, X)

    def decode(self, codes):
        """Decoder means for codes ``[z, c]``, as a numpy array."""
        (out,) = self._chunked(lambda c: (self.likelihood.mean(self.decoder(c)),), codes)
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
