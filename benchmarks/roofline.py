"""Matmul roofline at the model's own shapes.

Records every matrix multiply (``mm``, ``addmm``, ``bmm``) that one training
step dispatches, with its operand shapes and layouts, then times those exact
multiplies back to back. ``step FLOPs / that time`` is the matmul throughput
this CPU reaches at these shapes: the ceiling for a step made only of them.

    PYTHONPATH=. python benchmarks/roofline.py --threads 2
"""

import argparse
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from _common import header

_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


class _RecordMatmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.calls.append(
                (func, [(t.shape, t.stride(), t.dtype) for t in tensors])
            )
        return func(*args, **(kwargs or {}))


def matmul_flops(func, specs):
    if func is torch.ops.aten.addmm.default:
        specs = specs[1:]
    a, b = specs[0][0], specs[1][0]
    return 2 * a.numel() * b[-1]


def record_step(step):
    """Run ``step()`` once under the recorder; returns the list of matmul calls."""
    recorder = _RecordMatmuls()
    with recorder:
        step()
    return recorder.calls


def _materialise(shape, stride, dtype):
    # Same shape and memory layout (transposed or not) as in the real step.
    size = sum((s - 1) * st for s, st in zip(shape, stride)) + 1
    return torch.randn(size).to(dtype).as_strided(shape, stride)


def roofline(calls, repeats=200):
    """GFLOP/s of the recorded matmuls, replayed back to back (best of 5 rounds)."""
    ops = [(func, [_materialise(*spec) for spec in specs]) for func, specs in calls]
    flops = sum(matmul_flops(func, [(t.shape,) for t in tensors]) for func, tensors in ops)
    for func, tensors in ops * 5:  # warm up
        func(*tensors)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            for func, tensors in ops:
                func(*tensors)
        best = min(best, (time.perf_counter() - start) / repeats)
    return flops, best, flops / best / 1e9


def engine_step(batch_size=128, precision="float32"):
    """One training step of the estimator's engine on random MNIST-shaped data."""
    import numpy as np

    from _common import MODEL
    from skinfomax import InfoMaxVAETransformer

    X = np.random.RandomState(0).rand(batch_size * 2, 784).astype(np.float32)
    params = {**MODEL, "batch_size": batch_size}
    est = InfoMaxVAETransformer(max_iter=1, random_state=0, device="cpu", **params)
    if "precision" in est.get_params():
        est.set_params(precision=precision)
    est.fit(X)
    engine = est._engine
    x = torch.from_numpy(X[:batch_size])
    gen = torch.Generator().manual_seed(0)

    def step():
        with engine._autocast() if hasattr(engine, "_autocast") else torch.enable_grad():
            recon, kl, mi = engine._terms(x, "nwj", 1, gen, 1.0)
            loss = recon.mean() + kl.mean() - mi
        loss.backward()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    header(threads=args.threads)
    for precision in ("float32", "bfloat16"):
        calls = record_step(engine_step(args.batch_size, precision))
        flops, seconds, gflops = roofline(calls)
        print(f"{precision:9s} step: {len(calls)} matmuls, {flops / 1e6:.1f} MFLOP "
              f"({flops / args.batch_size / 1e6:.2f} MFLOP/sample); matmuls alone "
              f"{seconds * 1e3:.2f} ms -> {gflops:.1f} GFLOP/s, "
              f"{args.batch_size / seconds:,.0f} samples/s ceiling")


if __name__ == "__main__":
    main()
