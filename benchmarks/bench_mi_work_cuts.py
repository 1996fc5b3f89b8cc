"""What cutting the critics' work costs: the default `mutual_information` call against cheaper ones.

The issue asked for 10x over 0.1.0 at 2,000 samples "by removing work as well
as overhead ... at equal accuracy". Each variant below removes work from the
default call on the known channel of ``bench_mi.py``; this script times them
side by side (each in a fresh subprocess, interleaved over rounds, medians)
and counts their optimiser steps. Their accuracy is measured separately on
the ground-truth tables (``ground_truth.py`` with the same settings; logs in
``benchmarks/results/gt_cut_*.log``)::

    PYTHONPATH=. python benchmarks/bench_mi_work_cuts.py --sizes 2000 --rounds 3

Variants (what-if settings; two patch module constants of
``skinfomax.information`` in the worker process only):

- ``default``: every argument at its default.
- ``lr 3e-3``: the decayed candidates at 3x the learning rate (fewer epochs
  to converge); the undecayed candidate keeps its 3e-3.
- ``patience 10 + 3 widths``: early stopping after 10 epochs without
  improvement instead of 20, and the widest candidate dropped.
- ``3 critics``: three critics per fold instead of five.
"""

import argparse
import json
import os
import time

from _common import header, median, run_worker
from bench_mi import channel

VARIANTS = {
    "default": ({}, {}),
    "lr 3e-3": ({"learning_rate": 3e-3}, {"STEEP_RATE": 1.0}),
    "patience 10 + 3 widths": ({"n_iter_no_change": 10},
                            {"AUTO_CRITICS": ((32, 32), (64, 32), (128, 32))}),
    "3 critics": ({"n_critics": 3}, {}),
}


def worker(n_samples, name, threads):
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    torch.set_num_threads(threads)
    import skinfomax.information as information
    from skinfomax import mutual_information

    options, constants = VARIANTS[name]
    for constant, value in constants.items():
        setattr(information, constant, value)
    steps = [0]
    register_optimizer_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    x, z, truth = channel(n_samples)
    start = time.perf_counter()
    result = mutual_information(x, z, random_state=0, **options)
    print(json.dumps({"seconds": time.perf_counter() - start, "steps": steps[0],
                      "mi": float(result.mi), "se": float(result.se), "truth": truth}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(int(args.worker[0]), args.worker[1], args.threads)
    header()
    names = args.variants.split(",")
    results = {}
    for _ in range(args.rounds):
        for n in [int(s) for s in args.sizes.split(",")]:
            for name in names:
                r = run_worker(__file__, n, name, "--threads", args.threads)
                results.setdefault((n, name), []).append(r)
                print(f"n={n:,} {name:20s} {r['seconds']:6.1f} s  {r['steps']:5d} steps  "
                      f"{r['mi']:.4f} ± {r['se']:.4f} | load {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| samples | variant | median s (rounds) | vs default | optimiser steps | error |")
    print("|---|---|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",")]:
        base = median([r["seconds"] for r in results[(n, "default")]]) \
            if (n, "default") in results else None
        for name in names:
            runs = results[(n, name)]
            seconds = median([r["seconds"] for r in runs])
            ratio = f"{base / seconds:.2f}x" if base else "-"
            r, each = runs[0], ", ".join(f"{x['seconds']:.1f}" for x in runs)
            print(f"| {n:,} | {name} | {seconds:.1f} ({each}) "
                  f"| {ratio} | {r['steps']} | {100 * (r['mi'] - r['truth']) / r['truth']:+.1f}% |")
    print("\nload    : %.2f %.2f %.2f (1/5/15 min, after)" % os.getloadavg())


if __name__ == "__main__":
    main()
