"""The CUDA-graph step runner: at tabular and MNIST sizes an eager GPU step is bound by kernel
launches, so the whole step is captured once per batch shape and replayed with one launch, its
batch, noise and shift refilled into static buffers.
"""

import warnings

import torch

# Eager steps per batch shape before a CUDA graph is captured (lazy init happens in them).
WARMUP_STEPS = 3


def warn_fallback(what, exc, how):
    """Warn that an optional speed-up failed and training goes on without it."""
    warnings.warn(  # stacklevel: the user's fit / partial_fit call
        f"{what} failed ({type(exc).__name__}: {str(exc)[:200]}); training continues {how}.",
        RuntimeWarning, stacklevel=6)


class GraphedStep:
    """``step(x, eps, shift) -> sums`` captured (not run) for the shapes of ``x`` and ``eps``;
    ``step`` must be capture-safe: no host sync, optimisers with ``capturable=True``, and
    gradients None before the capture (so backward writes fresh buffers)."""

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


class GraphedSteps:
    """Runs ``step(x, eps, shift, capturing=False)`` through a :class:`GraphedStep` per batch
    size after :data:`WARMUP_STEPS` eager steps on a side stream, ``clear_grads()`` before a
    capture; a failed capture warns and runs every later step eagerly."""

    def __init__(self, step, clear_grads):
        self.step, self.clear_grads = step, clear_grads
        self.graphs, self.warmups, self.failed = {}, {}, False

    def __call__(self, x, eps, shift):
        size = x.shape[0]
        graphed = self.graphs.get(size)
        if self.failed:
            return self.step(x, eps, shift)
        if graphed is None and self.warmups.get(size, 0) < WARMUP_STEPS:
            # Eager steps on a side stream: lazy init (optimiser state, cuBLAS) precedes capture.
            self.warmups[size] = self.warmups.get(size, 0) + 1
            current, side = torch.cuda.current_stream(x.device), torch.cuda.Stream(x.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                sums = self.step(x, eps, shift)
            current.wait_stream(side)
            return sums
        if graphed is None:
            self.clear_grads()
            try:
                graphed = GraphedStep(lambda *a: self.step(*a, capturing=True), x, eps, shift)
            except Exception as exc:  # noqa: BLE001 - failures vary; eager re-raises real bugs
                warn_fallback("CUDA graph capture", exc, "without graphs")
                self.failed, self.graphs = True, {}
                return self.step(x, eps, shift)
            self.graphs[size] = graphed
        return graphed(x, eps, shift)
