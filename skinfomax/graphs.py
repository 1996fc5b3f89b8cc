"""Training steps replayed as CUDA graphs.

At the layer sizes of tabular and MNIST models an eager GPU step is bound by
kernel launches on the host, not by the GPU's arithmetic
(docs/performance.md#gpu). A CUDA graph records the whole step
once (forward, backward and both Adam updates) and replays it with a single
launch. What changes from step to step (the batch, the reparameterisation
noise and the critic's pairing shift) goes through static buffers that are
refilled before each replay; everything else (weights, gradients, optimiser
state) lives at fixed addresses already.
"""

import torch

__all__ = ["GraphedStep"]


class GraphedStep:
    """``step(x, eps, shift) -> sums`` captured for one batch shape.

    Parameters
    ----------
    step : callable
        Runs one full training step on its arguments and returns a tensor.
        It must be capture-safe: no host synchronisation, no CPU-side state
        that changes between calls, optimisers built with ``capturable=True``,
        and gradients set to None before the capture (so that backward writes
        fresh gradient buffers instead of adding to stale ones).
    x, eps : torch.Tensor
        The first batch and its noise; they fix the shapes of the buffers.
        Capturing records the step without running it: call the instance to
        run it.
    shift : int
        The first critic pairing shift.
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
        """Run the step on new inputs; the result is overwritten by the next call."""
        self._fill(x, eps, shift)
        self.graph.replay()
        return self.sums
