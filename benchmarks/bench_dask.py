"""The same 12-candidate x 3-fold GridSearchCV on a LocalCluster of 1 and of 2 workers.

Each worker is a process with one task slot (``threads_per_worker=1``) and one
torch thread (dask starts workers with OMP_NUM_THREADS=1), so the ideal
speed-up of 2 workers over 1 is ``min(2, cores)``. Clusters are started and
warmed up (one search) outside the timing; timed searches alternate 1 and 2
workers. Parallel efficiency = speed-up / ideal.

The 1-worker arm never reaches its worker: with one thread in the whole
cluster, joblib's dask backend reports ``effective_n_jobs() == 1`` and joblib
runs the search sequentially in this process, on this process's torch
threads (``--client-threads``, default 1, like a worker; before 2026-12-03
the script left it at torch's default, 2 here, which made the 1-worker arm a
2-thread run). ``dask_worker_overhead.py`` times one fit in the client, in a
worker alone and in two workers at once.

    PYTHONPATH=. python benchmarks/bench_dask.py --n-samples 1500 --epochs 3 --repeats 2
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import joblib  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from _common import MODEL, header, load_data, median, timed  # noqa: E402
from skinfomax import InfoMaxVAETransformer, elbo_scorer  # noqa: E402

# 3 x 2 x 2 = 12 candidates.
GRID = {"alpha": [0.0, 1.0, 10.0], "beta": [0.5, 1.0], "n_components": [4, 10]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--client-threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.client_threads)
    header()
    X = load_data(args.n_samples)
    model = {k: v for k, v in MODEL.items() if k != "n_components"}
    est = InfoMaxVAETransformer(max_iter=args.epochs, device="cpu", random_state=0, **model)

    clusters = {
        n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        dashboard_address=":0")
        for n in (1, 2)
    }
    clients = {n: Client(cluster, set_as_default=False) for n, cluster in clusters.items()}
    try:
        def search(n_workers):
            with joblib.parallel_backend("dask", client=clients[n_workers]):
                return GridSearchCV(est, GRID, cv=3, scoring=elbo_scorer).fit(X)

        for n in (1, 2):
            with joblib.parallel_backend("dask", client=clients[n]):
                jobs = joblib.effective_n_jobs(-1)
            where = (f"this process on {torch.get_num_threads()} torch thread(s)" if jobs == 1
                     else "the workers")
            print(f"{n} worker(s): joblib's effective_n_jobs {jobs}, the search runs in {where}")

        for n in (1, 2):
            print(f"{n} worker(s): torch threads per worker",
                  sorted(clients[n].run(lambda: __import__("torch").get_num_threads()).values()))
            search(n)  # warm-up: imports and first-touch costs out of the timing
        times = {1: [], 2: []}
        for _ in range(args.repeats):
            for n in (1, 2):
                times[n].append(timed(lambda: search(n))[0])
                print(f"{n} worker(s): {times[n][-1]:.1f}s | load {os.getloadavg()[0]:.2f}",
                      flush=True)
    finally:
        for n in (1, 2):
            clients[n].close()
            clusters[n].close()

    cores = os.cpu_count()
    ideal = min(2, cores)
    speedup = median(times[1]) / median(times[2])
    print(f"\n36 fits of {args.n_samples * 2 // 3} samples x {args.epochs} epochs")
    print(f"median wall time: 1 worker {median(times[1]):.1f}s, 2 workers "
          f"{median(times[2]):.1f}s")
    print(f"speed-up {speedup:.2f} (ideal {ideal} on {cores} cores), "
          f"parallel efficiency {speedup / ideal:.0%}")
    print("load after:", "%.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
