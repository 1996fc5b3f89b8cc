"""Torch threads idle and beside busy processes of equal priority (``--busy 0 1``: that many
``while True`` loops): fit (digits, 10 epochs; MNIST, 50,000 rows, 2 epochs), transform
(digits x 20) and ``mutual_information`` (2,000 samples, 2 folds, 1 critic), each at the
``--threads`` settings ("none": ``n_threads=None``, the default policy), interleaved, median
of ``--rounds``::

    PYTHONPATH=. python benchmarks/speed/bench_threads.py
"""

import os
import subprocess
import sys
import time

import numpy as np
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, interleave, load_data, md_head, md_row, parse_args, quiet
from skinfomax import InfoMaxVAETransformer, mutual_information


def cases(mnist_rows):
    X = load_digits().data / 16
    mnist = load_data(mnist_rows)
    rng = np.random.RandomState(0)
    A = rng.randn(2000, 5)
    B = A[:, :2] + rng.randn(2000, 2)
    fitted = InfoMaxVAETransformer(n_components=8, max_iter=2, random_state=0).fit(X)
    big = np.tile(X, (20, 1))
    return {
        "fit digits": lambda t: InfoMaxVAETransformer(
            n_components=8, max_iter=10, tol=None, random_state=0, n_threads=t).fit(X),
        "fit MNIST": lambda t: InfoMaxVAETransformer(
            n_components=10, likelihood="bernoulli", max_iter=2, tol=None, random_state=0,
            n_threads=t).fit(mnist),
        "transform": lambda t: fitted.set_params(n_threads=t).transform(big),
        "mutual_information": lambda t: mutual_information(
            A, B, n_folds=2, n_critics=1, random_state=0, n_threads=t),
    }


def main():
    args = parse_args(__doc__, dict(rounds=1, mnist_rows=2000, busy=[0]),
                      rounds=3, mnist_rows=50_000, busy=[0, 1], threads=["1", "2", "none"])
    header()
    settings = [None if t == "none" else int(t) for t in args.threads]
    medians = {}
    for n_busy in args.busy:
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                 for _ in range(n_busy)]
        try:
            time.sleep(1)
            for name, run in cases(args.mnist_rows).items():
                print(f"-- {name}, {n_busy} busy process(es)", flush=True)
                with quiet():
                    times = interleave({str(t): (lambda t=t: run(t)) for t in settings},
                                       args.rounds)
                medians[name, n_busy] = {t: float(np.median(v)) for t, v in times.items()}
        finally:
            for loop in loops:
                loop.kill()
    print()
    md_head("case", "busy processes", *(f"n_threads={t} s" for t in args.threads))
    for (name, n_busy), row in medians.items():
        md_row(name, n_busy, *(f"{v:.2f}" for v in row.values()))


if __name__ == "__main__":
    main()
