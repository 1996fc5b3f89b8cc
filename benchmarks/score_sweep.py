"""How far held-out ``score`` can be trusted: a sweep of fits, with spikes and warnings.

Fits the transformer on four data sets (digits in the quick start's
configuration, wine and breast cancer in raw units, MNIST digits with the
Bernoulli likelihood) at alpha 0, 1 and 10, seeds 0-4 and 1 and 2 torch
threads; the seed also picks beta (1 or 4) and the latent size (2 or 10), so
every combination occurs. For each fit it records the held-out ``score``,
whether ``score`` warned, the training MI curve's spikes (an epoch whose MI
falls more than ``max(5 robust SDs, 1 nat)`` below the median of the 10
epochs before it) and its minimum, and the bound of a fresh critic on the
frozen encoder (``mi_bounds(refit_critic=True)``), and the encoder's rate
(the upper bound on I(x; z)). Prints one row per fit and a summary per data
set.

    PYTHONPATH=. python benchmarks/score_sweep.py --out sweep.csv
    PYTHONPATH=. python benchmarks/score_sweep.py --summary sweep.csv
"""

import argparse
import csv
import os
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, parse_args  # noqa: E402

import skinfomax  # noqa: E402
from skinfomax import InfoMaxVAETransformer  # noqa: E402

ALPHAS = (0.0, 1.0, 10.0)
# The seed picks beta and the latent size: every (beta, size) pair occurs.
BETA_AND_SIZE = {0: (1.0, 2), 1: (4.0, 10), 2: (1.0, 10), 3: (4.0, 2), 4: (1.0, 10)}
FIELDS = ["dataset", "alpha", "beta", "n_components", "seed", "threads", "seconds", "score",
          "score_warned", "spikes", "min_train_mi", "refit_lower", "refit_lower_se", "rate"]


def load(name, n_mnist):
    """Train and held-out rows, and the data set's settings."""
    if name == "mnist":
        load_mnist = getattr(skinfomax, "load_mnist", None)
        if load_mnist is None:  # before the public API listed it
            from skinfomax.datasets import load_mnist
        X, y = load_mnist(n_mnist, random_state=0)
        settings = {"likelihood": "bernoulli", "max_iter": 30}
    elif name == "digits":  # the quick start: MinMax-scaled, 300 epochs
        X, y = load_digits(return_X_y=True)
        settings = {"max_iter": 300}
    else:
        X, y = (load_wine if name == "wine" else load_breast_cancer)(return_X_y=True)
        settings = {"max_iter": 100}
    X_train, X_test, _, _ = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    if name == "digits":
        scaler = MinMaxScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, X_test, settings


def spikes(mi, k=5.0, window=10, floor=1.0):
    """Epochs whose MI falls more than max(k robust SDs, floor) below the previous window's median."""
    count = 0
    for t in range(window, len(mi)):
        previous = mi[t - window:t]
        median = np.median(previous)
        robust_sd = 1.4826 * np.median(np.abs(previous - median))
        count += mi[t] < median - max(k * robust_sd, floor)
    return int(count)


def fit_one(data, alpha, seed, threads):
    X_train, X_test, settings = data
    beta, n_components = BETA_AND_SIZE[seed]
    vae = InfoMaxVAETransformer(n_components=n_components, alpha=alpha, beta=beta,
                                n_threads=threads, random_state=seed, **settings)
    start = time.perf_counter()
    vae.fit(X_train)
    seconds = time.perf_counter() - start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = vae.score(X_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fresh critic on few rows may warn: not score's
        refit = vae.mi_bounds(X_test, refit_critic=True)
    rate = float(vae.kl_per_dimension(X_test).sum(axis=1).mean())
    mi = np.array([h["mi"] for h in vae.history_])
    return {"alpha": alpha, "beta": beta, "n_components": n_components, "seed": seed,
            "threads": threads, "seconds": round(seconds, 2), "score": score,
            "score_warned": int(any("bound is" in str(w.message) for w in caught)),
            "spikes": spikes(mi), "min_train_mi": float(mi.min()),
            "refit_lower": refit.lower, "refit_lower_se": refit.lower_se, "rate": rate}


def summary(paths):
    rows = [r for p in paths for r in csv.DictReader(open(p))]
    print(f"{len(rows)} fits from {', '.join(paths)}")
    print(f"{'dataset':<14}{'fits':>5}{'score<=0':>9}{'(rate<0.1)':>11}{'warned':>7}"
          f"{'spiky':>6}{'spikes':>7}{'min MI':>10}{'ratio median [5%, 95%]':>28}")
    for name in sorted({r["dataset"] for r in rows}) + ["all"]:
        sub = [r for r in rows if name in ("all", r["dataset"])]
        score = np.array([float(r["score"]) for r in sub])
        refit = np.array([float(r["refit_lower"]) for r in sub])
        n_spikes = np.array([int(r["spikes"]) for r in sub])
        ratio = score / refit
        ratio = ratio[refit > 0.1]  # a ratio to a bound near zero says nothing
        q = np.percentile(ratio, [50, 5, 95]) if ratio.size else [np.nan] * 3
        rate = np.array([float(r.get("rate") or np.nan) for r in sub])
        print(f"{name:<14}{len(sub):>5}{int((score <= 0).sum()):>9}"
              f"{int(((score <= 0) & (rate < 0.1)).sum()):>11}"
              f"{sum(int(r['score_warned']) for r in sub):>7}{int((n_spikes > 0).sum()):>6}"
              f"{int(n_spikes.sum()):>7}{min(float(r['min_train_mi']) for r in sub):>10.3g}"
              f"{q[0]:>12.2f} [{q[1]:.2f}, {q[2]:.2f}] (n={ratio.size})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,wine,breast_cancer,mnist")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--alphas", default=",".join(str(a) for a in ALPHAS))
    parser.add_argument("--n-mnist", type=int, default=5000)
    parser.add_argument("--part", default="0/1", help="k/n: every n-th fit from the k-th")
    parser.add_argument("--out", default=None, help="CSV to append rows to")
    parser.add_argument("--summary", nargs="+", default=None, help="summarise CSV files")
    args = parse_args(parser, {"datasets": "wine", "seeds": "0", "threads": "1",
                               "alphas": "1.0"})
    if args.summary:
        summary(args.summary)
        return
    header()
    k, n = (int(v) for v in args.part.split("/"))
    jobs = [(d, float(a), int(s), int(t)) for d in args.datasets.split(",")
            for a in args.alphas.split(",") for s in args.seeds.split(",")
            for t in args.threads.split(",")][k::n]
    data = {d: load(d, args.n_mnist) for d in {j[0] for j in jobs}}
    out = open(args.out, "a", newline="") if args.out else None
    writer = csv.DictWriter(out, FIELDS) if out else None
    if out and out.tell() == 0:
        writer.writeheader()
    print(",".join(FIELDS))
    for dataset, alpha, seed, threads in jobs:
        row = {"dataset": dataset, **fit_one(data[dataset], alpha, seed, threads)}
        print(",".join(str(row[f]) for f in FIELDS), flush=True)
        if writer:
            writer.writerow(row)
            out.flush()


if __name__ == "__main__":
    main()
