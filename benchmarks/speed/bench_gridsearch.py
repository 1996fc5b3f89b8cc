"""GridSearchCV on 2 parallel workers against the same search run sequentially.

The search: 4 candidates (alpha x beta) x 3 folds = 12 fits. "sequential" is
``n_jobs=1`` in this process on ``--threads`` torch threads (default 1, like a
worker; joblib's dask backend on a 1-worker cluster also runs it here).
``--backends``: ``loky`` (``n_jobs=2``; loky caps a worker's torch threads to
``cpus // n_jobs``: reported) and ``dask`` (a ``LocalCluster`` of 2 processes,
one task slot and one torch thread each). Every arm runs once untimed first
(not with ``--quick``), then the arms alternate. Last, the bound on the
speed-up: if 2 torch threads make a fit S times faster, two 1-thread workers
reach at best a speed-up of 2 / S.

    PYTHONPATH=. python benchmarks/speed/bench_gridsearch.py --n-samples 3000 --repeats 2
    PYTHONPATH=. python benchmarks/speed/bench_gridsearch.py --backends loky,dask --n-samples 1500
"""

import contextlib
import importlib.util
import os
import sys

import joblib
import torch
from sklearn.model_selection import GridSearchCV

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import MODEL, header, interleave, load_after, load_data, median, parse_args
from skinfomax import InfoMaxVAETransformer, elbo_scorer

GRID = {"alpha": [0.0, 1.0], "beta": [0.5, 1.0]}


@contextlib.contextmanager
def arms(backends):
    """{arm: (joblib context, n_jobs)}: sequential, then 2 workers of each backend."""
    with contextlib.ExitStack() as stack:
        found = {"sequential": (contextlib.nullcontext, 1)}
        if "loky" in backends:
            threads = joblib.Parallel(n_jobs=2)(joblib.delayed(lambda _: (
                torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")))(i) for i in (0, 1))
            print("torch threads in 2 loky workers (threads, OMP_NUM_THREADS):", threads)
            found["loky"] = (contextlib.nullcontext, 2)
        if "dask" in backends:
            from distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"))
            client = stack.enter_context(Client(cluster, set_as_default=False))
            print("torch threads in 2 dask workers:",
                  sorted(client.run(lambda: __import__("torch").get_num_threads()).values()))
            found["dask"] = (lambda: joblib.parallel_backend("dask", client=client), None)
        yield found


def main():
    has_dask = importlib.util.find_spec("distributed") is not None
    args = parse_args(__doc__, dict(n_samples=300, epochs=1, repeats=1,
                                    backends="loky,dask" if has_dask else "loky"),
                      backends=("loky", "comma-separated: loky, dask"), n_samples=3000,
                      epochs=2, repeats=2, threads=(1, "this process's torch threads"))
    header(threads=args.threads)
    X = load_data(args.n_samples)
    est = InfoMaxVAETransformer(max_iter=args.epochs, device="cpu", random_state=0, **MODEL)
    with arms(args.backends.split(",")) as found:
        def search(arm):
            context, n_jobs = found[arm]
            with context():
                GridSearchCV(est, GRID, cv=3, scoring=elbo_scorer, n_jobs=n_jobs).fit(X)

        for arm in found if not args.quick else ():
            search(arm)  # warm-up
        times = interleave({arm: lambda arm=arm: search(arm) for arm in found}, args.repeats)
    n_train = args.n_samples * 2 // 3
    print(f"\n12 fits of {n_train} samples x {args.epochs} epochs, "
          f"{os.cpu_count()} cores; median of {args.repeats}")
    print(f"{'arm':12s} {'wall s':>8s} {'speed-up':>9s}")
    for arm, t in times.items():
        print(f"{arm:12s} {median(t):8.2f} {median(times['sequential']) / median(t):9.2f}")

    def fits(threads):  # 4 fits on ``threads`` torch threads
        torch.set_num_threads(threads)
        for i in range(4):
            est.set_params(random_state=i).fit(X[:n_train])

    t = interleave({"1 thread": lambda: fits(1), "2 threads": lambda: fits(2)}, args.repeats)
    one, two = median(t["1 thread"]), median(t["2 threads"])
    print(f"4 fits in this process: 1 thread {one:.2f}s, 2 threads {two:.2f}s; "
          f"S = {one / two:.2f}, so 2 one-thread workers reach at most a speed-up of "
          f"2 / S = {2 * two / one:.2f}")
    load_after()


if __name__ == "__main__":
    main()
