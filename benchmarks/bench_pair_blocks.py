"""All-pairs score matrices of stacked critics at several block sizes (pairs per pass).

`skinfomax.utils.pair_row_blocks` cuts the pairs of a score matrix (and the
early-stopping score's shifted pairs) into blocks of at most
``MAX_PAIRS_PER_PASS_CPU`` pairs on the CPU (``MAX_PAIRS_PER_PASS`` on
other devices), counted over all stacked critics. This times the score
matrix of one 256-row batch, the held-out evaluation's unit, through the
mean of ``M`` critics, for each block size, interleaved over rounds
(median)::

    PYTHONPATH=. python benchmarks/bench_pair_blocks.py --threads 2 --rounds 5
"""

import argparse
import time

import torch

from _common import header, median

SHAPES = [((32, 32), 5), ((64, 32), 5), ((128, 32), 5), ((256, 32), 5), ((256, 32), 1),
          ((32, 32), 1)]
BUDGETS = [1 << 16, 1 << 15, 1 << 14, 1 << 13]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=6, help="score matrices per timing")
    args = parser.parse_args()
    header(threads=args.threads)
    import skinfomax.utils as utils
    from skinfomax.ensembles import MeanCritic, StackedCritic

    x, codes = torch.randn(256, 10), torch.randn(256, 3)
    print("| critic sizes | critics | " + " | ".join(f"{b} pairs, ms" for b in BUDGETS)
          + " | 2^16 / 2^14 |")
    print("|---|---|" + "---|" * (len(BUDGETS) + 1))
    for sizes, n_critics in SHAPES:
        critic = MeanCritic(StackedCritic.build(10, 3, sizes, list(range(n_critics))))
        times = {b: [] for b in BUDGETS}
        with torch.no_grad():
            for _ in range(args.rounds):
                for budget in BUDGETS:
                    utils.MAX_PAIRS_PER_PASS_CPU = budget
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        critic.score_matrix(x, codes)
                    times[budget].append((time.perf_counter() - start) / args.calls * 1e3)
        ms = {b: median(v) for b, v in times.items()}
        print(f"| {sizes} | {n_critics} | " + " | ".join(f"{ms[b]:.1f}" for b in BUDGETS)
              + f" | {ms[1 << 16] / ms[1 << 14]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
