"""Speed and error of the default `mutual_information` call on a known channel, old vs new.

Two linear-Gaussian channels ``z = A x + sigma n`` (``x``, ``n`` standard
normal), with ``I(x; z) = 1/2 log det(I + A A^T / sigma^2)`` nats:
``--channel linear`` (the default), ``x`` in 10 dimensions, ``z`` in 3,
``A`` a fixed 3 x 10 matrix, ``sigma = 1``; ``--channel correlated``, ``x``
in 5 dimensions, ``z_k = rho x_k + sqrt(1 - rho^2) n_k`` for k = 1, 2
(``-log(1 - rho^2)`` nats, 1.022 at ``--rho 0.8``).
Each contender estimates it with ``mutual_information(X, Z, estimator,
random_state=0)`` (``--estimators``) in its own subprocess, importing
skinfomax from its own source tree (``--old-src``, e.g. ``git worktree add
/tmp/skinfomax-old 39f37f1``, or this checkout), interleaved (old, new, old,
new ...). Only the call is timed; ``--timeout`` stops a call after that many
seconds and reports it as longer. With ``--warm`` each worker first imports
``torch._dynamo`` (what torch's optimisers do on first use in a process,
1.4-1.8 s here), leaving that one-off cost out.

``--ksg`` adds sklearn's ``mutual_info_regression`` (KSG) on the same
samples. It estimates I(X_j; Z_k) for one feature and one scalar target, not
the joint I(X; Z): its per-pair values are compared with their closed forms,
and their sum over pairs (what a user adding them up would report) with the
joint truth::

    PYTHONPATH=. python benchmarks/bench_mi.py --sizes 2000,20000 --threads 2 --rounds 2 --ksg
    PYTHONPATH=. python benchmarks/bench_mi.py --channel correlated --estimators nwj,infonce \
        --sizes 2000,20000 --threads 2 --versions old,new --old-src /tmp/before
"""

import argparse
import json
import os
import signal
import subprocess

import numpy as np

from _common import header, numbers, parse_args, run_worker, timed_cpu


def channel_matrix(kind="linear", rho=0.8):
    """``(A, sigma)`` of the channel ``z = A x + sigma n``."""
    if kind == "linear":
        return 0.5 * np.random.RandomState(1234).randn(3, 10), 1.0
    return np.hstack([rho * np.eye(2), np.zeros((2, 3))]), float(np.sqrt(1 - rho ** 2))


def channel(n_samples, kind="linear", rho=0.8, seed=0):
    """Samples ``(x, z)`` of the channel and its true I(x; z) in nats."""
    A, sigma = channel_matrix(kind, rho)
    rng = np.random.RandomState(seed)
    x = rng.randn(n_samples, A.shape[1])
    z = x @ A.T + sigma * rng.randn(n_samples, A.shape[0])
    truth = 0.5 * np.linalg.slogdet(np.eye(A.shape[0]) + A @ A.T / sigma ** 2)[1]
    return x, z, float(truth)


def pairwise_truth(kind="linear", rho=0.8):
    """Closed-form I(x_j; z_k) (n_z x n_x) and I(x; z_k) (n_z,) of the channel."""
    A, sigma = channel_matrix(kind, rho)
    var_z = (A ** 2).sum(axis=1) + sigma ** 2
    rho2 = A ** 2 / var_z[:, None]
    return -0.5 * np.log1p(-rho2), 0.5 * np.log(var_z / sigma ** 2)


def worker(n_samples, threads, warm=False, estimator="nwj", kind="linear", rho=0.8,
           timeout=0):
    import torch

    torch.set_num_threads(threads)
    if warm:  # torch._dynamo, imported by torch's optimisers on first use
        torch.optim.Adam([torch.zeros(1, requires_grad=True)]).zero_grad()
    import skinfomax
    from skinfomax import mutual_information

    def stop(signum, frame):
        raise TimeoutError

    x, z, truth = channel(n_samples, kind, rho)
    nan, chosen = float("nan"), []
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(timeout)  # 0: none
    try:
        seconds, cpu_seconds, result = timed_cpu(
            lambda: mutual_information(x, z, estimator, random_state=0))
        mi, se = float(result.mi), float(result.se)
        chosen = list(getattr(result, "critic_hidden_layer_sizes", None) or [])
    except TimeoutError:  # reported as "> timeout"
        seconds, cpu_seconds, mi, se = -float(timeout), nan, nan, nan
    signal.alarm(0)
    print(json.dumps({
        "seconds": seconds, "cpu_seconds": cpu_seconds, "mi": mi, "se": se, "truth": truth,
        "chosen": chosen, "source": os.path.dirname(skinfomax.__file__),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }))


def run_contender(name, source, n_samples, estimator, args):
    argv = ["--n", n_samples, "--threads", args.threads, "--estimator", estimator, "--channel",
            args.channel, "--rho", args.rho, "--timeout", args.timeout] + (
                ["--warm"] if args.warm else [])
    load_before = os.getloadavg()[0]
    result = run_worker(__file__, *argv, env=dict(os.environ, PYTHONPATH=source))
    result["load"] = (load_before, os.getloadavg()[0])
    print(f"  [{name}] PYTHONPATH={source} {os.path.abspath(__file__)} --worker "
          f"{' '.join(map(str, argv))}", flush=True)
    print(f"  [{name}] skinfomax from {result['source']}, torch {result['torch']}, "
          f"{result['threads']} threads", flush=True)
    return result


def seconds(value):
    return f"> {-value:.0f}" if value < 0 else f"{value:.1f}"


def row(name, n_samples, estimator, r):
    error = 100 * (r["mi"] - r["truth"]) / r["truth"]
    return (f"| {name} | {n_samples:,} | {estimator} | {seconds(r['seconds'])} "
            f"| {r['cpu_seconds']:.1f} | {r['mi']:.3f} ± {r['se']:.3f} | {r['truth']:.3f} "
            f"| {error:+.1f}% | {tuple(r['chosen'])} | {r['load'][0]:.2f} / {r['load'][1]:.2f} |")


def ksg(n_samples, kind, rho):
    from sklearn.feature_selection import mutual_info_regression

    x, z, truth = channel(n_samples, kind, rho)
    pair_truth, per_z_truth = pairwise_truth(kind, rho)
    seconds, cpu_seconds, estimates = timed_cpu(lambda: np.array(
        [mutual_info_regression(x, z[:, k], random_state=0) for k in range(z.shape[1])]))
    print(f"\nKSG (sklearn mutual_info_regression at its defaults: n_neighbors=3, n_jobs=None), "
          f"n={n_samples:,}: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU for the "
          f"{z.shape[1]} targets x {x.shape[1]} features; load %.2f" % os.getloadavg()[0])
    print("| z_k | sum_j KSG I(x_j; z_k) | sum_j true I(x_j; z_k) | true I(x; z_k) | "
          "KSG per feature (true) |")
    print("|---|---|---|---|---|")
    for k in range(z.shape[1]):
        cells = ", ".join(f"{e:.3f} ({t:.3f})" for e, t in zip(estimates[k], pair_truth[k]))
        print(f"| {k} | {estimates[k].sum():.3f} | {pair_truth[k].sum():.3f} | "
              f"{per_z_truth[k]:.3f} | {cells} |")
    total = estimates.sum()
    print(f"naive sum over all (j, k): KSG {total:.3f} nats, its closed form "
          f"{pair_truth.sum():.3f}; the joint I(x; z) is {truth:.3f} "
          f"(naive KSG sum {100 * (total - truth) / truth:+.1f}% off)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--estimator", help=argparse.SUPPRESS)
    args = parse_args(parser, dict(sizes="300", threads=1, rounds=1, versions="new", ksg=True,
                                   channel="correlated", estimators="nwj,infonce"),
                      sizes="2000,20000", threads=2, rounds=2, versions="old,new",
                      old_src="/tmp/skinfomax-old", ksg=False,
                      estimators=("nwj", "comma-separated: nwj, dv, infonce"),
                      channel=("linear", "linear (10 + 3 dimensions) or correlated (5 + 2)"),
                      rho=(0.8, "the correlated channel's correlation"),
                      timeout=(0, "seconds after which a call is stopped (0: never)"),
                      warm=(False, "import torch._dynamo (what torch's optimisers import on "
                                   "first use) in each worker before timing"))
    if args.worker:
        return worker(args.n, args.threads, args.warm, args.estimator, args.channel, args.rho,
                      args.timeout)
    header(threads=args.threads)
    sources = {"old": os.path.abspath(args.old_src),
               "new": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    versions, estimators = args.versions.split(","), args.estimators.split(",")
    for name in versions:
        rev = subprocess.run(["git", "-C", sources[name], "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        print(f"{name}: {sources[name]} {('(git ' + rev + ')') if rev else ''}")
    x, z, truth = channel(10, args.channel, args.rho)
    print(f"channel: {args.channel}, x in {x.shape[1]} and z in {z.shape[1]} dimensions, "
          f"true I(x; z) = {truth:.4f} nats")
    sizes = numbers(args.sizes)
    results = {}
    for round_ in range(args.rounds):
        for n_samples in sizes:
            for estimator in estimators:
                for name in versions:
                    print(f"round {round_ + 1}, n={n_samples:,}, {estimator}, {name}:",
                          flush=True)
                    r = run_contender(name, sources[name], n_samples, estimator, args)
                    results.setdefault((name, n_samples, estimator), []).append(r)
                    print(row(name, n_samples, estimator, r), flush=True)
    print("\n| version | samples | estimator | wall s | CPU s | estimate ± SE | truth | error "
          "| critic | load before / after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, n_samples, estimator), runs in sorted(
            results.items(), key=lambda kv: (kv[0][1], estimators.index(kv[0][2]), kv[0][0])):
        for r in runs:
            print(row(name, n_samples, estimator, r))
    if set(versions) == {"old", "new"}:
        print("\n| samples | estimator | old s (per round) | new s (per round) "
              "| old / new (per round) |")
        print("|---|---|---|---|---|")
        for n_samples in sizes:
            for estimator in estimators:
                old, new = ([r["seconds"] for r in results[(v, n_samples, estimator)]]
                            for v in ("old", "new"))
                ratios = ", ".join(("> " if o < 0 else "") + f"{abs(o) / n:.1f}x"
                                   for o, n in zip(old, new))
                print(f"| {n_samples:,} | {estimator} | {', '.join(map(seconds, old))} | "
                      f"{', '.join(map(seconds, new))} | {ratios} |")
    if args.ksg:
        for n_samples in sizes:
            ksg(n_samples, args.channel, args.rho)
    print("\nload    : %.2f %.2f %.2f (1/5/15 min, after)" % os.getloadavg())


if __name__ == "__main__":
    main()
