"""InfoMaxVAETransformer.fit against hand-written PyTorch loops, interleaved.

One process, the same data and threads, the contenders in turn (A B C A B C
...). Reports median samples/s of each, its ratio to the loops of
``handwritten.py``, and its share of the matmul ceiling: the samples/s of a
step made of nothing but the matrix multiplies of one tight step (batch 128),
recorded with their shapes and layouts and replayed back to back.

    PYTHONPATH=. python benchmarks/speed/bench_fit.py --n-samples 5000 --repeats 5
    PYTHONPATH=. python benchmarks/speed/bench_fit.py --variants estimator,bf16,tight,typical
"""

import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
import handwritten
from _common import (MODEL, header, interleave, load_after, load_data, median, parse_args, quiet,
                     timed)
from skinfomax import InfoMaxVAETransformer

MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


class RecordMatmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.calls.append((func, [(t.shape, t.stride(), t.dtype) for t in tensors]))
        return func(*args, **(kwargs or {}))


def matmul_ceiling(X, batch_size=128, repeats=200):
    """(matmuls, FLOPs, seconds) of one tight step's matmuls replayed back to back (best of 5)."""
    with RecordMatmuls() as recorder:
        handwritten.train_tight(X[:batch_size], epochs=1, batch_size=batch_size)
    ops, flops = [], 0
    for func, specs in recorder.calls:
        tensors = [torch.randn(sum((n - 1) * s for n, s in zip(shape, stride)) + 1)
                   .to(dtype).as_strided(shape, stride) for shape, stride, dtype in specs]
        a, b = tensors[-2:]  # addmm's first operand is the bias
        flops += 2 * a.numel() * b.shape[-1]
        ops.append((func, tensors))
    for func, tensors in ops * 5:  # warm-up
        func(*tensors)

    def replay():
        for _ in range(repeats):
            for func, tensors in ops:
                func(*tensors)

    return len(ops), flops, min(timed(replay)[0] for _ in range(5)) / repeats


def estimator_runner(**params):
    def run(X, epochs):
        est = InfoMaxVAETransformer(max_iter=epochs, device="cpu", random_state=0,
                                    **{**MODEL, **params})
        with quiet():
            return est.fit(X)
    return run


CONTENDERS = {
    "estimator": estimator_runner(),
    "plain": estimator_runner(alpha=0.0),  # steps without a critic: not the ceiling's FLOPs
    "compiled": estimator_runner(compile=True),
    "bf16": estimator_runner(precision="bfloat16"),
    "tight": handwritten.train_tight,
    "typical": handwritten.train_typical,
}


def main():
    args = parse_args(__doc__, dict(n_samples=512, epochs=1, repeats=1, threads=1),
                      n_samples=5000, epochs=5, repeats=5, threads=2,
                      variants="estimator,tight,typical")
    replays = 3 if args.quick else 200  # of the step's matmuls per timing round
    names = args.variants.split(",")  # keys of CONTENDERS
    header(threads=args.threads)
    X = load_data(args.n_samples)
    for name in names:  # warm-up: allocator, lazy init, compile caches
        CONTENDERS[name](X[:512], 1)
    n_ops, flops, step_seconds = matmul_ceiling(X, repeats=replays)
    times = interleave({n: lambda n=n: CONTENDERS[n](X, args.epochs) for n in names}, args.repeats)
    # Again after the runs; the faster of the two is the ceiling.
    step_seconds = min(step_seconds, matmul_ceiling(X, repeats=replays)[2])
    ceiling = 128 / step_seconds

    n = args.n_samples * args.epochs
    rate = {name: n / median(t) for name, t in times.items()}
    best = {name: n / min(t) for name, t in times.items()}
    print(f"\n{args.n_samples} samples x {args.epochs} epochs, batch 128, {args.threads} threads")
    print(f"matmul ceiling: the tight step's {n_ops} matmuls "
          f"({flops / 128 / 1e6:.2f} MFLOP/sample) replayed in {step_seconds * 1e3:.2f} ms = "
          f"{flops / step_seconds / 1e9:.1f} GFLOP/s = {ceiling:,.0f} samples/s")
    print(f"{'variant':12s} {'median s':>9s} {'samples/s':>10s} {'best':>9s} {'of ceiling':>10s}")
    for name in names:
        share = "-" if name == "plain" else f"{rate[name] / ceiling:.1%}"
        print(f"{name:12s} {median(times[name]):9.2f} {rate[name]:10,.0f} {best[name]:9,.0f} "
              f"{share:>10s}")
    if {"plain", "estimator"} <= set(names):
        ratio = median(times["estimator"]) / median(times["plain"])
        print(f"ratio estimator / plain time: {ratio:.2f}x")
    for ref in ("tight", "typical"):
        for name in (n for n in names if ref in rate and n not in ("tight", "typical")):
            print(f"ratio {name} / {ref}: {rate[name] / rate[ref]:.2f}x "
                  f"(best-of: {best[name] / best[ref]:.2f}x)")
    load_after()


if __name__ == "__main__":
    main()
