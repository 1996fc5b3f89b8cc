"""GridSearchCV with n_jobs=2 against n_jobs=1 on the same grid.

Also reports how many torch threads a fit sees inside a joblib (loky)
worker: the estimator's default ``n_threads=None`` inherits the worker's
setting, which loky caps to ``cpus // n_jobs``, so parallel fits do not
oversubscribe the cores. Runs alternate n_jobs=1 and n_jobs=2.

Last, the bound on the ratio: the same fits run one after another in this
process on 1 and on 2 torch threads. If 2 threads make a fit S times faster
than 1, two 1-thread workers can at best reach S / 2 of ``n_jobs=1``.

    PYTHONPATH=. python benchmarks/bench_gridsearch.py --n-samples 3000 --repeats 2
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from _common import MODEL, header, load_data, median, timed  # noqa: E402
from skinfomax import InfoMaxVAETransformer, elbo_scorer  # noqa: E402


def _worker_threads(_):
    import torch

    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    header()
    print("torch threads in 2 loky workers (threads, OMP_NUM_THREADS):",
          Parallel(n_jobs=2)(delayed(_worker_threads)(i) for i in range(2)))
    X = load_data(args.n_samples)
    grid = {"alpha": [0.0, 1.0], "beta": [0.5, 1.0]}  # 4 candidates x 3 folds = 12 fits
    est = InfoMaxVAETransformer(max_iter=args.epochs, device="cpu", random_state=0, **MODEL)

    def search(n_jobs):
        return GridSearchCV(est, grid, cv=3, scoring=elbo_scorer, n_jobs=n_jobs).fit(X)

    search(2)  # warm up the worker pool (process start and imports out of the timing)
    times = {1: [], 2: []}
    for _ in range(args.repeats):
        for n_jobs in (1, 2):
            times[n_jobs].append(timed(lambda: search(n_jobs))[0])
            print(f"n_jobs={n_jobs}: {times[n_jobs][-1]:.1f}s | load {os.getloadavg()[0]:.2f}",
                  flush=True)
    ratio = median(times[2]) / median(times[1])
    print(f"\n12 fits of {args.n_samples * 2 // 3} samples x {args.epochs} epochs; parent torch "
          f"threads {torch.get_num_threads()}")
    print(f"median wall time n_jobs=1 {median(times[1]):.1f}s, n_jobs=2 {median(times[2]):.1f}s, "
          f"ratio n_jobs=2 / n_jobs=1 = {ratio:.2f}")
    print(f"load after: {os.getloadavg()}")

    n_train = args.n_samples * 2 // 3

    def fits(threads, count=6):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return timed(lambda: [
                est.set_params(random_state=i).fit(X[:n_train]) for i in range(count)
            ])[0]
        finally:
            torch.set_num_threads(previous)

    rounds = [(fits(1), fits(2)) for _ in range(args.repeats)]
    one, two = median([r[0] for r in rounds]), median([r[1] for r in rounds])
    print(f"\n6 fits in this process, median of {args.repeats}: 1 thread {one:.1f}s, "
          f"2 threads {two:.1f}s; speedup S = {one / two:.2f}, so n_jobs=2 / n_jobs=1 "
          f">= S / 2 = {one / two / 2:.2f} on 2 cores")


if __name__ == "__main__":
    main()
