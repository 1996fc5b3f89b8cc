"""Speed and error of the default `mutual_information` call on a known channel, old vs new.

Linear-Gaussian channels ``z = A x + sigma n``, ``I(x; z) = 1/2 log det(I + A A^T /
sigma^2)`` nats: ``--channel linear``, x in 10 dimensions, z in 3 (1.777 nats);
``--channel correlated``, x in 5, ``z_k = 0.8 x_k + 0.6 n_k`` for k = 1, 2 (1.022
nats). Each contender runs ``mutual_information(X, Z, estimator, random_state=0)`` in
its own subprocess, importing skinfomax from its own tree (``--old-src``, e.g. ``git
worktree add /tmp/skinfomax-old 39f37f1``, or this checkout), interleaved (old, new,
old, new ...). Only the call is timed; ``--timeout`` stops it after that many seconds;
``--warm`` first imports ``torch._dynamo`` (what torch's optimisers do on first use).
``--ksg`` adds sklearn's ``mutual_info_regression`` (KSG), which estimates I(X_j; Z_k)
for one feature and one target: its sum over the pairs beside the joint truth::

    PYTHONPATH=. python benchmarks/speed/bench_mi.py --sizes 2000,20000 --threads 2 --ksg
    PYTHONPATH=. python benchmarks/speed/bench_mi.py --channel correlated \\
        --estimators nwj,infonce --versions old,new --old-src /tmp/before
"""

import itertools
import json
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import (ROOT, header, load_after, md_head, md_row, numbers, parse_args, revision,
                     run_worker, timed)

RHO = 0.8  # of the correlated channel
CHANNELS = {  # (A, sigma) of z = A x + sigma n
    "linear": (0.5 * np.random.RandomState(1234).randn(3, 10), 1.0),
    "correlated": (np.hstack([RHO * np.eye(2), np.zeros((2, 3))]), float(np.sqrt(1 - RHO**2))),
}


def channel(n_samples, kind, seed=0):
    """Samples ``(x, z)`` of the channel and its true I(x; z) in nats."""
    A, sigma = CHANNELS[kind]
    rng = np.random.RandomState(seed)
    x = rng.randn(n_samples, A.shape[1])
    z = x @ A.T + sigma * rng.randn(n_samples, A.shape[0])
    return x, z, float(0.5 * np.linalg.slogdet(np.eye(A.shape[0]) + A @ A.T / sigma**2)[1])


def worker(n_samples, estimator, args):
    import torch

    torch.set_num_threads(args.threads)
    if args.warm:  # torch._dynamo, imported by torch's optimisers on first use
        torch.optim.Adam([torch.zeros(1, requires_grad=True)]).zero_grad()
    import skinfomax

    def stop(signum, frame):
        raise TimeoutError

    x, z, truth = channel(int(n_samples), args.channel)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(args.timeout)  # 0: none
    try:
        cpu_start = time.process_time()
        seconds, result = timed(lambda: skinfomax.mutual_information(x, z, estimator,
                                                                       random_state=0))
        cpu_seconds = time.process_time() - cpu_start
        mi, se = float(result.mi), float(result.se)
        chosen = list(getattr(result, "critic_hidden_layer_sizes", None) or [])  # old trees
    except TimeoutError:  # reported as "> timeout"
        nan = float("nan")
        seconds, cpu_seconds, mi, se, chosen = -float(args.timeout), nan, nan, nan, []
    signal.alarm(0)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "mi": mi, "se": se,
                      "truth": truth, "chosen": chosen, "torch": torch.__version__,
                      "source": os.path.dirname(skinfomax.__file__),
                      "threads": torch.get_num_threads()}))


def run_contender(name, source, n_samples, estimator, args):
    argv = [n_samples, estimator, "--threads", args.threads, "--channel", args.channel,
            "--timeout", args.timeout] + (["--warm"] if args.warm else [])
    load_before = os.getloadavg()[0]
    r = run_worker(__file__, *argv, env=dict(os.environ, PYTHONPATH=source))
    r["load"] = (load_before, os.getloadavg()[0])
    print(f"  [{name}] PYTHONPATH={source} {__file__} --worker {' '.join(map(str, argv))}: "
          f"skinfomax from {r['source']}, torch {r['torch']}, {r['threads']} threads", flush=True)
    return r


def seconds(value):
    return f"> {-value:.0f}" if value < 0 else f"{value:.1f}"


def ksg(n_samples, kind):
    """sklearn's KSG per (x_j, z_k), summed over the pairs, beside the closed forms."""
    from sklearn.feature_selection import mutual_info_regression

    x, z, truth = channel(n_samples, kind)
    A, sigma = CHANNELS[kind]  # I(x_j; z_k) = -1/2 log(1 - corr(x_j, z_k)^2)
    pair_truth = -0.5 * np.log1p(-A**2 / ((A**2).sum(axis=1) + sigma**2)[:, None])
    cpu_start = time.process_time()
    wall, estimates = timed(lambda: np.array(
        [mutual_info_regression(x, z[:, k], random_state=0) for k in range(z.shape[1])]))
    cpu = time.process_time() - cpu_start
    total = estimates.sum()
    print(f"\nKSG (sklearn mutual_info_regression at its defaults: n_neighbors=3, n_jobs=None), "
          f"n={n_samples:,}: {wall:.2f} s wall, {cpu:.2f} s CPU for the {z.shape[1]} targets "
          f"x {x.shape[1]} features; load {os.getloadavg()[0]:.2f}\n"
          f"naive sum over all (j, k): KSG {total:.3f} nats, its closed form "
          f"{pair_truth.sum():.3f}; the joint I(x; z) is {truth:.3f} "
          f"(naive KSG sum {100 * (total - truth) / truth:+.1f}% off)", flush=True)


def main():
    args = parse_args(__doc__, dict(sizes="300", threads=1, rounds=1, versions="new", ksg=True,
                                    channel="correlated", estimators="nwj,infonce"),
                      sizes="2000,20000", threads=2, rounds=2, versions="old,new",
                      old_src="/tmp/skinfomax-old", ksg=False,
                      estimators=("nwj", "comma-separated: nwj, dv, infonce"),
                      channel=("linear", "linear (10 + 3 dimensions) or correlated (5 + 2)"),
                      timeout=(0, "seconds after which a call is stopped (0: never)"),
                      warm=(False, "import torch._dynamo (what torch's optimisers import on "
                                   "first use) in each worker before timing"))
    if args.worker:
        return worker(*args.worker, args)
    header(threads=args.threads)
    sources = {"old": os.path.abspath(args.old_src), "new": ROOT}
    versions, estimators = args.versions.split(","), args.estimators.split(",")
    sizes = numbers(args.sizes)
    for name in versions:
        print(f"{name}: {sources[name]} (git {revision(sources[name]) or '?'})")
    x, z, truth = channel(10, args.channel)
    print(f"channel: {args.channel}, x in {x.shape[1]} and z in {z.shape[1]} dimensions, "
          f"true I(x; z) = {truth:.4f} nats\n")
    md_head("version", "samples", "estimator", "wall s", "CPU s", "estimate ± SE", "truth",
            "error", "critic", "load before / after")
    for _, n_samples, estimator, name in itertools.product(range(args.rounds), sizes,
                                                           estimators, versions):
        r = run_contender(name, sources[name], n_samples, estimator, args)
        md_row(name, f"{n_samples:,}", estimator, seconds(r["seconds"]), f"{r['cpu_seconds']:.1f}",
               f"{r['mi']:.3f} ± {r['se']:.3f}", f"{r['truth']:.3f}",
               f"{100 * (r['mi'] - r['truth']) / r['truth']:+.1f}%", tuple(r["chosen"]),
               "%.2f / %.2f" % r["load"])
    if args.ksg:
        for n_samples in sizes:
            ksg(n_samples, args.channel)
    load_after()


if __name__ == "__main__":
    main()
