"""Matmul FLOPs of the default `mutual_information` call, and the CPU's ceiling.

Runs ``mutual_information(X, Z, random_state=0)`` on the known channel of
``bench_mi.py`` under a dispatch mode that counts every matrix multiply
(``mm``, ``addmm``, ``bmm``, ``baddbmm``: 2 FLOPs per multiply-add) the call
makes, split into training forward passes (grad enabled), their backward
passes (run by autograd), and passes without grad (early-stopping
validation, the width choice, held-out evaluation). Optimiser steps are
counted with a global step hook; divided by the train part's batches per
epoch they give the epochs actually run, summed over every critic trained
together (a step of critics batched into one tensor counts once).

The ceiling is a large float32 ``torch.matmul`` on ``--threads`` threads;
``--seconds 2000:T1,20000:T2`` (wall times of the same call from
``bench_mi.py``) prints the share of it that the call reaches::

    PYTHONPATH=. python benchmarks/flops_mi.py --sizes 2000,20000 --threads 2
"""

import argparse
import math
import os
import time
from collections import Counter

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import TorchDispatchMode

from _common import header
from bench_mi import channel

aten = torch.ops.aten


def matmul_flops(func, args):
    if func in (aten.mm.default, aten.bmm.default):
        a, b = args[0], args[1]
    elif func in (aten.addmm.default, aten.baddbmm.default):
        a, b = args[1], args[2]
    else:
        return 0
    return 2 * a.numel() * b.shape[-1]


class CountMatmuls(TorchDispatchMode):
    """Sums matmul FLOPs by phase: training forward, backward, no grad."""

    def __init__(self):
        super().__init__()
        self.flops, self.calls = Counter(), Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flops = matmul_flops(func, args)
        if flops:
            if torch._C._current_autograd_node() is not None:
                phase = "backward"
            elif torch.is_grad_enabled():
                phase = "train forward"
            else:
                phase = "no grad (validation, choice, test)"
            self.flops[phase] += flops
            self.calls[phase] += 1
        return func(*args, **(kwargs or {}))


def count_call(n_samples):
    from skinfomax import mutual_information

    x, z, truth = channel(n_samples)
    steps = Counter()
    hook = register_optimizer_step_post_hook(
        lambda optimizer, args, kwargs: steps.update(["steps"]))
    counter = CountMatmuls()
    try:
        with counter:
            result = mutual_information(x, z, random_state=0)
    finally:
        hook.remove()
    return counter, steps["steps"], result, truth


def batches_per_epoch(n_samples, n_folds=5, validation_fraction=0.2, batch_size=256):
    n_rest = n_samples - math.ceil(n_samples / n_folds)
    n_train = n_rest - math.ceil(validation_fraction * n_rest)
    try:  # the trainer's epochs are capped at EPOCH_BATCHES batches (not in 39f37f1)
        from skinfomax.estimation import EPOCH_BATCHES
    except ImportError:
        EPOCH_BATCHES = math.inf
    return max(1, min(n_train // batch_size, EPOCH_BATCHES))


def matmul_ceiling(size=2048, repeats=10):
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--threads", type=int, default=2, help="threads of the ceiling")
    parser.add_argument("--count-threads", type=int, default=1,
                        help="threads of the counted call (the count does not depend on it)")
    parser.add_argument("--seconds", default="",
                        help="wall seconds of the uninstrumented call, e.g. 2000:12.3,20000:95")
    args = parser.parse_args()
    header(threads=args.threads)
    ceiling = matmul_ceiling()
    print(f"ceiling : {ceiling / 1e9:.1f} GFLOP/s (float32 2048 x 2048 matmul, best of 10, "
          f"{torch.get_num_threads()} threads); load %.2f\n" % os.getloadavg()[0], flush=True)
    seconds = dict(kv.split(":") for kv in args.seconds.split(",") if kv)
    torch.set_num_threads(args.count_threads)
    for n_samples in [int(s) for s in args.sizes.split(",")]:
        start = time.perf_counter()
        counter, steps, result, truth = count_call(n_samples)
        elapsed = time.perf_counter() - start
        total = sum(counter.flops.values())
        per_epoch = batches_per_epoch(n_samples)
        print(f"n={n_samples:,}: estimate {result.mi:.3f} ± {result.se:.3f} (truth {truth:.3f}), "
              f"critic {getattr(result, 'critic_hidden_layer_sizes', None)}; "
              f"counted in {elapsed:.0f} s (instrumented)")
        for phase in ("train forward", "backward", "no grad (validation, choice, test)"):
            print(f"  {phase:36s} {counter.flops[phase] / 1e9:10.2f} GFLOP "
                  f"in {counter.calls[phase]:,} matmuls")
        print(f"  {'total':36s} {total / 1e9:10.2f} GFLOP")
        print(f"  optimiser steps {steps:,}; {per_epoch} batches per epoch of a fold's train "
              f"part -> {steps / per_epoch:,.0f} epochs (summed over the trainings that step "
              f"separately)")
        if counter.flops["train forward"] and steps:
            forward, backward = (counter.flops[p] / steps for p in ("train forward", "backward"))
            print(f"  per optimiser step: {forward / 1e6:.2f} MFLOP forward + "
                  f"{backward / 1e6:.2f} MFLOP backward")
        if str(n_samples) in seconds:
            wall = float(seconds[str(n_samples)])
            print(f"  uninstrumented wall {wall:.1f} s -> {total / wall / 1e9:.2f} GFLOP/s = "
                  f"{100 * total / wall / ceiling:.1f}% of the ceiling")
        print(flush=True)
    print("load    : %.2f %.2f %.2f (1/5/15 min, after)" % os.getloadavg())


if __name__ == "__main__":
    main()
