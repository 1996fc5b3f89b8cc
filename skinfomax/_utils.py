"""Mechanisms shared by the engine, the critic trainer and the estimators: devices and threads,
seeds and streams, batches, early stopping, checks."""

import contextlib
import functools
import hashlib
import math
import os
import signal
import threading
import time
import types
import warnings
from numbers import Integral

import numpy as np
import torch

# A held-out bound below this is no estimate of I >= 0: the critic overrates some pairs.
IMPLAUSIBLE_BOUND = -1.0


# -- devices and threads -------------------------------------------------------
_ELSEWHERE = ("use device='auto' (CUDA, then MPS, then the CPU, whichever this machine has) "
              "or device='cpu'.")


def resolve_device(device, fallback=False):
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` (or a torch.device) as an available
    device; one this machine lacks raises ValueError or, with ``fallback`` (a model loaded
    where it was not fitted), becomes the CPU with a UserWarning."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from None
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not supported; use 'cpu', 'cuda[:N]' or 'mps'.")
    missing = _missing(resolved)
    if missing is None:
        return resolved
    if fallback:
        warnings.warn(f"This model was fitted on {resolved}, which is not available here; "
                      "loading it on the CPU.", UserWarning, stacklevel=4)
        return torch.device("cpu")
    raise ValueError(f"device={device!r} was requested but {missing}")


@functools.cache
def bf16_units(device):
    """Whether ``device`` computes bfloat16 natively: CUDA with bf16 support, or a CPU with
    AVX512-BF16 or AMX (torch's own checks); elsewhere bf16 is emulated and can be slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None)
                  for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def _missing(device):
    """Why this machine cannot run on ``device`` (None: it can)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"CUDA is not available here; {_ELSEWHERE}"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"only {torch.cuda.device_count()} CUDA device(s) exist."
    elif device.type == "mps" and not torch.backends.mps.is_available():
        return f"MPS is not available here; {_ELSEWHERE}"
    return None


@contextlib.contextmanager
def _torch_setting(get, set_, value):
    # Torch's process-wide settings belong to the caller: set for the block, then put back.
    previous = get()
    set_(value)
    try:
        yield value
    finally:
        set_(previous)


def torch_threads(n_threads):
    """Use ``n_threads`` torch threads inside the block (None: :func:`default_threads`; the
    block gets the count) and restore the caller's setting."""
    if n_threads is None:
        n_threads = default_threads()
    return _torch_setting(torch.get_num_threads, torch.set_num_threads, n_threads)


def default_threads():
    """``n_threads=None``: torch's setting, lowered to the cores that other processes leave
    idle now. Beside a busy process a thread that waits for a descheduled partner at every
    parallel region costs more than it gives (docs/performance.md, "Threads")."""
    current = torch.get_num_threads()
    busy = _busy_elsewhere() if current > 1 else None  # one thread: nothing to lower
    if busy is None:
        return current
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(current, n_cpus - busy))


def _running_elsewhere():
    """Threads running or runnable now outside this process (Linux's ``/proc``), else None."""
    try:
        with open("/proc/loadavg") as loadavg:  # "0.50 0.40 0.30 running/total last-pid"
            running = int(loadavg.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/stat") as stat:  # state follows "(name)"
                own += stat.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


_LOAD_READ = {"at": -math.inf, "busy": None}  # the last reading, reused for a second


def _busy_elsewhere(reads=5, interval=0.01, reuse=1.0):
    """Threads that ran in every one of ``reads`` looks ``interval`` s apart outside this
    process (a busy process, not a burst of kernel work), or None where /proc cannot be read;
    an idle machine answers at the first look."""
    now = time.monotonic()
    if now - _LOAD_READ["at"] > reuse:
        counts = [_running_elsewhere()]
        while len(counts) < reads and counts[-1] not in (None, 0):
            time.sleep(interval)
            counts.append(_running_elsewhere())
        _LOAD_READ.update(at=now, busy=None if None in counts else min(counts))
    return _LOAD_READ["busy"]


@contextlib.contextmanager
def deferred_interrupt():
    """Turn a first Ctrl-C in the block into a ``requested`` flag that training polls between
    steps (a second raises at once), in the main thread with Python's own handler in place."""
    request = types.SimpleNamespace(requested=False)

    def handle(signum, frame):
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    defer = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    previous = signal.signal(signal.SIGINT, handle) if defer else None
    try:
        yield request
    finally:
        if defer:
            signal.signal(signal.SIGINT, previous)


def default_dtype(dtype):
    """Make ``dtype`` torch's default inside the block, restoring the caller's afterwards."""
    return _torch_setting(torch.get_default_dtype, torch.set_default_dtype, dtype)


# -- seeds and random streams ----------------------------------------------------
def seed_from(random_state):
    """One int seed from an int, a ``RandomState`` (advanced) or None (scikit-learn's rules)."""
    from sklearn.utils import check_random_state  # the only scikit-learn rule used here

    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def spawn_seeds(seed, n):
    """``n`` independent seeds from ``seed`` (``SeedSequence.spawn``), never by offsets
    (``seed + 1`` is another consumer's seed)."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


def named_seed(seed, *names):
    """The seed of the stream ``names`` (e.g. ``"score critic", "init"``) of ``seed``, keyed
    by the names: no consumer depends on another's position."""
    key = [int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") for name in names]
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])


def split_rows(n_rows, sizes, seed):
    """Disjoint random row sets of ``sizes`` and the rest, from one permutation of
    ``RandomState(seed)``: ``split_rows(n, [k], seed)`` is ``(test, train)`` of
    ``train_test_split(range(n), test_size=k, random_state=seed)``."""
    return np.split(np.random.RandomState(seed).permutation(n_rows), np.cumsum(sizes))


@contextlib.contextmanager
def seeded(seed):
    """Seed torch's global CPU generator (module initialisation's) in the block, restoring
    the caller's state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def generators(seed, device, state=None):
    """CPU (batch order, shifts) and ``device`` (noise) generators, resumed from any ``state``."""
    cpu = torch.Generator().manual_seed(seed)
    noise = cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    if state is not None:
        cpu.set_state(state[0])
        if noise is not cpu:
            noise.set_state(state[1])
    return cpu, noise


# -- row blocks and batches: sizes that bound memory or fix shapes, never results ---------
# Host rows per block when X is reduced or standardised in float64.
HOST_BLOCK = 8192
# Rows per forward pass of encode / decode, the last zero-padded: BLAS picks kernels by shape,
# so a fixed shape makes transform(X)[i] == transform(X[i:i+1])[0] bit for bit.
EVAL_CHUNK = 512
# Pairs one critic pass computes over all stacked critics (a quarter on the CPU: in cache).
MAX_PAIRS_PER_PASS = {"cpu": 1 << 14}
MAX_PAIRS_PER_PASS_DEFAULT = 1 << 16


def host_blocks(n_rows):
    """Starts and stops of consecutive blocks of :data:`HOST_BLOCK` rows."""
    return [(start, min(start + HOST_BLOCK, n_rows)) for start in range(0, n_rows, HOST_BLOCK)]


def pair_row_blocks(rows, pairs_per_row, dim=0):
    """``rows`` split along ``dim`` into blocks of at most the device's pairs per pass."""
    budget = MAX_PAIRS_PER_PASS.get(rows.device.type, MAX_PAIRS_PER_PASS_DEFAULT)
    return rows.split(max(1, budget // pairs_per_row), dim=dim)


def batch_slices(n_samples, batch_size, generator=None, device=None):
    """Row indices of ``floor(n / batch_size)`` near-equal batches (at least one), none
    smaller than ``batch_size``; shuffled on the CPU with a ``generator``, else consecutive."""
    if generator is None:
        order = torch.arange(n_samples, device=device)
    else:
        order = torch.randperm(n_samples, generator=generator).to(device)
    return order.tensor_split(max(1, n_samples // batch_size))


def take_rows(X, idx):
    """``X[idx]`` for row indices of any shape, by ``index_select`` (advanced indexing gathers
    rows several times slower on the CPU)."""
    return X.index_select(0, idx.reshape(-1)).view(*idx.shape, *X.shape[1:])


def mean_and_se(values):
    """Mean and standard error of the mean (ddof=1; nan for a single value)."""
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else math.nan
    return float(values.mean()), float(se)


def warn_if_implausible(bound, estimator, cause, advice, stacklevel=3):
    """RuntimeWarning when a held-out bound is below ``IMPLAUSIBLE_BOUND`` nats, ending with
    ``cause()`` (only called then) and ``advice``."""
    if bound < IMPLAUSIBLE_BOUND:
        warnings.warn(f"The held-out {estimator} bound is {bound:.3g} nats, which no valid "
                      f"estimate of I >= 0 is: {cause()}; {advice}.", RuntimeWarning,
                      stacklevel=stacklevel)


# -- input checks --------------------------------------------------------------------
def numeric_array(check, X, **kwargs):
    """``check(X, **kwargs)``, with the non-numeric columns named when X has some."""
    try:
        return check(X, **kwargs)
    except ValueError as exc:
        if "could not convert" not in str(exc):
            raise
        columns = _non_numeric_columns(X)
        if not columns:
            raise
    shown = ", ".join(columns[:5]) + (", ..." if len(columns) > 5 else "")
    raise ValueError(
        f"{kwargs.get('input_name', 'X')} has non-numeric values in column(s) {shown}; "
        "the networks take numbers. Encode them first, e.g. categories with OneHotEncoder "
        "in a ColumnTransformer: make_column_transformer((OneHotEncoder(), "
        "[<those columns>]), remainder='passthrough').") from None


def _non_numeric_columns(X):
    """Names (a DataFrame's) or indices of the columns of 2-D X that do not convert to float."""
    names = getattr(X, "columns", None)
    if names is not None:
        columns = [X[name] for name in names]
    else:
        X = np.asarray(X, dtype=object)
        X = X.reshape(-1, 1) if X.ndim == 1 else X
        if X.ndim != 2:
            return []
        names, columns = range(X.shape[1]), X.T
    bad = []
    for name, column in zip(names, columns):
        try:
            np.asarray(column, dtype=np.float64)
        except (TypeError, ValueError):
            bad.append(repr(name) if isinstance(name, str) else str(name))
    return bad


# -- early stopping ----------------------------------------------------------------
class EarlyStopping:
    """Patience on a greater-is-better score, with a snapshot of the best weights; ``tensors``
    have a leading member axis (one model: ``t.unsqueeze(0)`` views; none: no snapshot, one
    member); it needs no host sync. An epoch improves when it beats the best by ``tol``, or
    with ``relative`` by ``tol`` times the best's gain over the first epoch's score."""

    def __init__(self, tensors, n_iter_no_change, tol, relative=False):
        self.tensors = list(tensors)
        self.n_iter_no_change, self.tol, self.relative = n_iter_no_change, tol, relative
        n_members, device = ((self.tensors[0].shape[0], self.tensors[0].device) if self.tensors
                             else (1, torch.device("cpu")))
        self.best = torch.full((n_members,), -math.inf, dtype=torch.float32, device=device)
        self.first = torch.zeros_like(self.best)
        self.stale = torch.zeros(n_members, dtype=torch.long, device=device)
        self.best_epoch = torch.zeros(n_members, dtype=torch.long, device=device)
        with torch.no_grad():
            self.best_state = [t.detach().clone() for t in self.tensors]
        self._epoch = 0

    @property
    def stopped(self):
        """Boolean tensor: the members whose patience has run out."""
        return self.stale >= self.n_iter_no_change

    @torch.no_grad()
    def update(self, scores, may_stop=True):
        """Record one epoch's scores ``(n_members,)``, snapshotting improved members' weights
        (stopped ones no longer move); returns the improved mask. Without ``may_stop`` the
        patience count stays one short of stopping."""
        self._epoch += 1
        scores = torch.as_tensor(scores, dtype=self.best.dtype, device=self.best.device)
        scores = scores.reshape(self.best.shape)
        if self._epoch == 1:
            self.first = scores.clone()
        margin = self.tol * (self.best - self.first).clamp(min=0) if self.relative else self.tol
        improved = (scores > self.best + margin) & ~self.stopped
        self.best = torch.where(improved, scores, self.best)
        self.best_epoch = torch.where(improved, self._epoch, self.best_epoch)
        self.stale = torch.where(improved, 0, self.stale + 1)
        if not may_stop:
            self.stale.clamp_(max=self.n_iter_no_change - 1)
        for best, current in zip(self.best_state, self.tensors):
            best.copy_(torch.where(_per_member(improved, current), current, best))
        return improved

    def stop(self, members):
        """Stop ``members`` (indices or a boolean mask) now, as if their patience had run out."""
        self.stale[members] = self.n_iter_no_change

    @torch.no_grad()
    def hold_stopped(self):
        """Put the stopped members back to their best weights (they stop moving)."""
        stopped = self.stopped
        for best, current in zip(self.best_state, self.tensors):
            current.copy_(torch.where(_per_member(stopped, current), best, current))

    @torch.no_grad()
    def restore(self):
        """Load every member's best weights (its initial ones if it never improved)."""
        for best, current in zip(self.best_state, self.tensors):
            current.copy_(best)


def _per_member(mask, tensor):
    return mask.view(-1, *([1] * (tensor.dim() - 1)))


# -- checks -----------------------------------------------------------------------
def as_positive_ints(value, length=None):
    """``value`` as a tuple of positive ints (not bools), of ``length`` if given, or None."""
    try:
        values = tuple(value)
    except TypeError:
        return None
    if not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    if length is not None and len(values) != length:
        return None
    return tuple(int(v) for v in values)
