"""Why 2 dask workers barely beat 1 here: the same fit in the client, in one worker, in two at once.

Times ``k`` identical small fits (after one warm-up fit) on one torch thread:
in this process, in one ``LocalCluster`` worker alone, and in both workers
of a 2-worker cluster at once. ``--profile-interval`` sets dask's statistical
profiler's sampling interval (default 10ms), which walks every thread's
stack under the GIL. Note that ``bench_dask.py``'s 1-worker arm never reaches
its worker: on a cluster with one thread in all, joblib's dask backend
reports ``effective_n_jobs() == 1`` and joblib runs the search sequentially
in the calling process, on that process's torch threads::

    PYTHONPATH=. python benchmarks/dask_worker_overhead.py --repeats 3
    PYTHONPATH=. python benchmarks/dask_worker_overhead.py --repeats 3 --profile-interval 1000ms
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import MODEL, header, load_data, median  # noqa: E402


def fits(n_samples, epochs, k):
    """Seconds per fit over ``k`` fits after a warm-up one, and the torch threads used."""
    import torch

    from skinfomax import InfoMaxVAETransformer

    X = load_data(n_samples)
    model = {name: v for name, v in MODEL.items() if name != "n_components"}
    est = InfoMaxVAETransformer(max_iter=epochs, device="cpu", random_state=0, n_components=4,
                                **model)
    est.fit(X)
    start = time.perf_counter()
    for _ in range(k):
        est.fit(X)
    return (time.perf_counter() - start) / k, torch.get_num_threads()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fits", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-interval", default=None)
    args = parser.parse_args()
    if args.profile_interval:  # inherited by the nanny and its worker processes
        os.environ["DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL"] = args.profile_interval
    import torch
    from distributed import Client, LocalCluster

    torch.set_num_threads(1)
    header(f"profile interval: {args.profile_interval or 'dask default (10ms)'}")
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    workers = list(client.scheduler_info()["workers"])
    job = (args.n_samples, args.epochs, args.fits)
    times = {"client process": [], "one worker alone": [], "two workers at once": []}
    try:
        for _ in range(args.repeats):
            times["client process"].append(fits(*job)[0])
            alone = client.submit(fits, *job, workers=[workers[0]], pure=False)
            times["one worker alone"].append(alone.result()[0])
            both = [client.submit(fits, *job, workers=[w], pure=False) for w in workers]
            times["two workers at once"].append(median([r[0] for r in client.gather(both)]))
            print({k: f"{v[-1]:.3f}" for k, v in times.items()},
                  f"| load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        client.close()
        cluster.close()
    base = median(times["client process"])
    print(f"\n{args.fits} fits of {args.n_samples} samples x {args.epochs} epochs, 1 torch "
          "thread each; median seconds per fit:")
    for name, values in times.items():
        print(f"  {name:20s} {median(values):.3f} s  ({median(values) / base:.2f}x the client)")
    print("load after:", "%.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
