"""Where a default `mutual_information` call spends its time, stage by stage.

Wraps the trainer's pieces with wall-clock timers (one call, no
instrumentation inside torch): all critic training (``train_critics``, with
the early-stopping scoring inside it), that scoring alone (``_validate``),
the width choice's and the test parts' all-pairs evaluation, and prints each
training's per-member epochs of best validation bound::

    PYTHONPATH=. python benchmarks/profile_mi_stages.py --n 20000 --threads 2
"""

import argparse
import time

import torch

from _common import header
from bench_mi import channel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header()
    import skinfomax.estimation as estimation
    from skinfomax import mutual_information

    seconds = dict.fromkeys(["training", "early-stopping scoring", "choice evaluation",
                             "test evaluation"], 0.0)
    best_epochs = []

    def timed(function, name, after=None):
        def wrapper(*a, **k):
            start = time.perf_counter()
            result = function(*a, **k)
            key = name(a) if callable(name) else name
            seconds[key] += time.perf_counter() - start
            if after:
                after(result)
            return result
        return wrapper

    estimation.train_critics = timed(
        estimation.train_critics, "training",
        lambda r: best_epochs.append([int(e) for stack in r for e in stack]))
    estimation._validate = timed(estimation._validate, "early-stopping scoring")
    # _mean_critic_bounds(..., influence): True for the choice, False for the test parts.
    estimation._mean_critic_bounds = timed(
        estimation._mean_critic_bounds,
        lambda a: "choice evaluation" if a[-1] else "test evaluation")
    x, z, truth = channel(args.n)
    start = time.perf_counter()
    result = mutual_information(x, z, random_state=0)
    total = time.perf_counter() - start
    print(f"n={args.n:,}: {total:.1f} s; estimate {result.mi:.3f} ± {result.se:.3f} "
          f"({100 * (result.mi - truth) / truth:+.1f}%), critic {result.critic}")
    for name, value in seconds.items():
        print(f"  {name:24s} {value:6.2f} s")
    for k, epochs in enumerate(best_epochs):
        print(f"  training {k + 1}: best epochs {epochs}")


if __name__ == "__main__":
    main()
