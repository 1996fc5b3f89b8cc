"""Speed and error of the default `mutual_information` call on a known channel, old vs new.

The linear-Gaussian channel ``z = A x + n`` (``x ~ N(0, I_10)``, ``n ~
N(0, I_3)``, ``A`` a fixed 3 x 10 matrix) has ``I(x; z) = 1/2 log det(I_3 +
A A^T)`` nats.
Each contender estimates it with ``mutual_information(X, Z, random_state=0)``
in its own subprocess, importing skinfomax from its own source tree
(``--old-src``, e.g. ``git worktree add /tmp/skinfomax-old 39f37f1``, or this
checkout), interleaved (old, new, old, new ...). Only the call is timed; with
``--warm`` each worker first imports ``torch._dynamo`` (what torch's
optimisers do on first use in a process, 1.4-1.8 s here), leaving that
one-off cost out.

``--ksg`` adds sklearn's ``mutual_info_regression`` (KSG) on the same
samples. It estimates I(X_j; Z_k) for one feature and one scalar target, not
the joint I(X; Z): its per-pair values are compared with their closed forms,
and their sum over pairs (what a user adding them up would report) with the
joint truth::

    PYTHONPATH=. python benchmarks/bench_mi.py --sizes 2000,20000 --threads 2 --rounds 2 --ksg
"""

import argparse
import json
import os
import subprocess

import numpy as np

from _common import header, numbers, parse_args, run_worker, timed_cpu

N_X, N_Z = 10, 3
A = 0.5 * np.random.RandomState(1234).randn(N_Z, N_X)


def channel(n_samples, seed=0):
    """Samples ``(x, z)`` of the channel and its true I(x; z) in nats."""
    rng = np.random.RandomState(seed)
    x = rng.randn(n_samples, N_X)
    z = x @ A.T + rng.randn(n_samples, N_Z)
    truth = 0.5 * np.linalg.slogdet(np.eye(N_Z) + A @ A.T)[1]
    return x, z, float(truth)


def pairwise_truth():
    """Closed-form I(x_j; z_k) (3 x 10) and I(x; z_k) (3,) of the channel."""
    var_z = (A ** 2).sum(axis=1) + 1.0
    rho2 = A ** 2 / var_z[:, None]
    return -0.5 * np.log1p(-rho2), 0.5 * np.log(var_z)


def worker(n_samples, threads, warm=False):
    import torch

    torch.set_num_threads(threads)
    if warm:  # torch._dynamo, imported by torch's optimisers on first use
        torch.optim.Adam([torch.zeros(1, requires_grad=True)]).zero_grad()
    import skinfomax
    from skinfomax import mutual_information

    x, z, truth = channel(n_samples)
    seconds, cpu_seconds, result = timed_cpu(lambda: mutual_information(x, z, random_state=0))
    print(json.dumps({
        "seconds": seconds, "cpu_seconds": cpu_seconds, "mi": float(result.mi),
        "se": float(result.se), "truth": truth,
        "chosen": list(getattr(result, "critic_hidden_layer_sizes", None) or []),
        "source": os.path.dirname(skinfomax.__file__), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


def run_contender(name, source, n_samples, threads, warm=False):
    args = ["--n", n_samples, "--threads", threads] + (["--warm"] if warm else [])
    load_before = os.getloadavg()[0]
    result = run_worker(__file__, *args, env=dict(os.environ, PYTHONPATH=source))
    result["load"] = (load_before, os.getloadavg()[0])
    print(f"  [{name}] PYTHONPATH={source} {os.path.abspath(__file__)} --worker "
          f"{' '.join(map(str, args))}", flush=True)
    print(f"  [{name}] skinfomax from {result['source']}, torch {result['torch']}, "
          f"{result['threads']} threads", flush=True)
    return result


def row(name, n_samples, r):
    error = 100 * (r["mi"] - r["truth"]) / r["truth"]
    return (f"| {name} | {n_samples:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} "
            f"| {r['mi']:.3f} ± {r['se']:.3f} "
            f"| {error:+.1f}% | {tuple(r['chosen'])} | {r['load'][0]:.2f} / {r['load'][1]:.2f} |")


def ksg(n_samples):
    from sklearn.feature_selection import mutual_info_regression

    x, z, truth = channel(n_samples)
    pair_truth, per_z_truth = pairwise_truth()
    seconds, cpu_seconds, estimates = timed_cpu(lambda: np.array(
        [mutual_info_regression(x, z[:, k], random_state=0) for k in range(N_Z)]))
    print(f"\nKSG (sklearn mutual_info_regression at its defaults: n_neighbors=3, n_jobs=None), "
          f"n={n_samples:,}: {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU for the "
          f"{N_Z} targets x {N_X} features; load %.2f" % os.getloadavg()[0])
    print("| z_k | sum_j KSG I(x_j; z_k) | sum_j true I(x_j; z_k) | true I(x; z_k) | "
          "KSG per feature (true) |")
    print("|---|---|---|---|---|")
    for k in range(N_Z):
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
    args = parse_args(parser, dict(sizes="300", threads=1, rounds=1, versions="new", ksg=True),
                      sizes="2000,20000", threads=2, rounds=2, versions="old,new",
                      old_src="/tmp/skinfomax-old", ksg=False,
                      warm=(False, "import torch._dynamo (what torch's optimisers import on "
                                   "first use) in each worker before timing"))
    if args.worker:
        return worker(args.n, args.threads, args.warm)
    header(threads=args.threads)
    sources = {"old": os.path.abspath(args.old_src),
               "new": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    versions = args.versions.split(",")
    for name in versions:
        rev = subprocess.run(["git", "-C", sources[name], "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        print(f"{name}: {sources[name]} {('(git ' + rev + ')') if rev else ''}")
    _, _, truth = channel(10)
    print(f"channel: x ~ N(0, I_{N_X}), z = A x + N(0, I_{N_Z}), true I(x; z) = {truth:.4f} nats")
    sizes = numbers(args.sizes)
    results = {}
    for round_ in range(args.rounds):
        for n_samples in sizes:
            for name in versions:
                print(f"round {round_ + 1}, n={n_samples:,}, {name}:", flush=True)
                r = run_contender(name, sources[name], n_samples, args.threads, args.warm)
                results.setdefault((name, n_samples), []).append(r)
                print(row(name, n_samples, r), flush=True)
    print("\n| version | samples | wall s | CPU s | estimate ± SE | error | critic "
          "| load before / after |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, n_samples), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for r in runs:
            print(row(name, n_samples, r))
    if set(versions) == {"old", "new"}:
        print("\n| samples | old s (per round) | new s (per round) | old / new (per round) |")
        print("|---|---|---|---|")
        for n_samples in sizes:
            old = [r["seconds"] for r in results[("old", n_samples)]]
            new = [r["seconds"] for r in results[("new", n_samples)]]
            ratios = ", ".join(f"{o / n:.1f}x" for o, n in zip(old, new))
            print(f"| {n_samples:,} | {', '.join(f'{o:.1f}' for o in old)} | "
                  f"{', '.join(f'{n:.1f}' for n in new)} | {ratios} |")
    if args.ksg:
        for n_samples in sizes:
            ksg(n_samples)
    print("\nload    : %.2f %.2f %.2f (1/5/15 min, after)" % os.getloadavg())


if __name__ == "__main__":
    main()
