"""`mutual_information` on 2 threads against 2 worker processes (``n_jobs=2``).

The default call on the known channel of ``bench_mi.py`` in three set-ups,
each in a fresh subprocess (so the workers' start-up is counted, as in a
user's first call), interleaved over rounds: one torch thread; two torch
threads; ``n_jobs=2`` worker processes with one thread each (the parent
keeps two threads for the held-out evaluation)::

    PYTHONPATH=. python benchmarks/bench_mi_jobs.py --sizes 2000,20000 --rounds 2
"""

import argparse
import json
import os
import time

from _common import header, median, run_worker
from bench_mi import channel

SETUPS = {"1 thread": (1, None), "2 threads": (2, None), "n_jobs=2": (2, 2)}


def worker(n_samples, threads, n_jobs):
    import torch

    torch.set_num_threads(threads)
    from skinfomax import mutual_information

    x, z, truth = channel(n_samples)
    start = time.perf_counter()
    result = mutual_information(x, z, random_state=0, n_jobs=n_jobs)
    print(json.dumps({"seconds": time.perf_counter() - start, "mi": float(result.mi),
                      "se": float(result.se), "truth": truth}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        n, threads, n_jobs = args.worker
        return worker(n, threads, n_jobs or None)
    header()
    results = {}
    for _ in range(args.rounds):
        for n in [int(s) for s in args.sizes.split(",")]:
            for name, (threads, n_jobs) in SETUPS.items():
                r = run_worker(__file__, n, threads, n_jobs or 0)
                results.setdefault((n, name), []).append(r)
                print(f"n={n:,} {name:9s} {r['seconds']:6.1f} s  {r['mi']:.4f} ± {r['se']:.4f} "
                      f"| load {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| samples | set-up | median s (rounds) | vs 2 threads | estimate |")
    print("|---|---|---|---|---|")
    for (n, name), runs in results.items():
        seconds = [r["seconds"] for r in runs]
        base = median([r["seconds"] for r in results[(n, "2 threads")]])
        print(f"| {n:,} | {name} | {median(seconds):.1f} ({', '.join(f'{s:.1f}' for s in seconds)}) "
              f"| {base / median(seconds):.2f}x | {runs[0]['mi']:.4f} ± {runs[0]['se']:.4f} |")
    print("load after:", "%.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
