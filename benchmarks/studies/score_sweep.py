"""How far held-out ``score`` can be trusted: a sweep of fits, with spikes and warnings.

Fits the transformer on four data sets (digits in the quick start's
configuration, wine and breast cancer in raw units, 5,000 MNIST digits with
the Bernoulli likelihood) at alpha 0, 1 and 10, seeds 0-4 and 1 and 2 torch
threads; the seed also picks beta (1 or 4) and the latent size (2 or 10), so
every combination occurs. For each fit it records the held-out ``score``,
whether ``score`` warned, the training MI curve's spikes (an epoch whose MI
falls more than ``max(5 robust SDs, 1 nat)`` below the median of the 10
epochs before it) and its minimum, the bound of a fresh critic on the frozen
encoder (``mi_bounds(refit_critic=True)``) and the encoder's rate (the upper
bound on I(x; z)). Epochs: fixed per data set (``EPOCHS``, ``tol=None``), or with
``--default-max-iter`` as a user's fit runs (``max_iter`` and the stopping rule at their
defaults). Prints one CSV row per fit; ``--summary`` tabulates CSVs.

    PYTHONPATH=. python benchmarks/studies/score_sweep.py --threads 1 --out s1.csv
    PYTHONPATH=. python benchmarks/studies/score_sweep.py --summary s1.csv
"""

import itertools
import os
import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_split, numbers, parse_args, quiet, timed
from skinfomax import InfoMaxVAETransformer

# The seed picks beta and the latent size: every (beta, size) pair occurs.
BETA_AND_SIZE = {0: (1.0, 2), 1: (4.0, 10), 2: (1.0, 10), 3: (4.0, 2), 4: (1.0, 10)}
EPOCHS = {"mnist": 30, "digits": 300, "wine": 100, "breast_cancer": 100}
FIELDS = ["dataset", "alpha", "beta", "n_components", "seed", "threads", "seconds", "score",
          "score_warned", "spikes", "min_train_mi", "refit_lower", "refit_lower_se", "rate"]


def spikes(mi, k=5.0, window=10, floor=1.0):
    """Epochs whose MI falls more than max(k robust SDs, floor) below the previous window's
    median."""
    count = 0
    for t in range(window, len(mi)):
        previous = mi[t - window:t]
        median = np.median(previous)
        robust_sd = 1.4826 * np.median(np.abs(previous - median))
        count += mi[t] < median - max(k * robust_sd, floor)
    return int(count)


def fit_one(dataset, X_train, X_test, alpha, seed, threads, default_max_iter=False):
    beta, n_components = BETA_AND_SIZE[seed]
    vae = InfoMaxVAETransformer(
        n_components=n_components, alpha=alpha, beta=beta, n_threads=threads, random_state=seed,
        **({} if default_max_iter else {"max_iter": EPOCHS[dataset], "tol": None}),
        **({"likelihood": "bernoulli"} if dataset == "mnist" else {}))
    seconds = timed(lambda: vae.fit(X_train))[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = vae.score(X_test)
    with quiet():  # a fresh critic on few rows may warn: not score's
        refit = vae.mi_bounds(X_test, refit_critic=True)
    mi = np.array([h["mi"] for h in vae.history_])
    return dict(dataset=dataset, alpha=alpha, beta=beta, n_components=n_components, seed=seed,
                threads=threads, seconds=round(seconds, 2), score=score,
                score_warned=int(any("bound is" in str(w.message) for w in caught)),
                spikes=spikes(mi), min_train_mi=float(mi.min()), refit_lower=refit.lower,
                refit_lower_se=refit.lower_se,
                rate=float(vae.kl_per_dimension(X_test).sum(axis=1).mean()))


def summary(paths):
    rows = pd.concat([pd.read_csv(p) for p in paths])
    print(f"{len(rows)} fits from {', '.join(paths)}")
    print(f"{'dataset':<14}{'fits':>5}{'score<=0':>9}{'(rate<0.1)':>11}{'warned':>7}"
          f"{'spiky':>6}{'spikes':>7}{'min MI':>10}{'ratio median [5%, 95%]':>28}")
    for name in sorted(set(rows["dataset"])) + ["all"]:
        sub = rows if name == "all" else rows[rows["dataset"] == name]
        low = sub["score"] <= 0
        ratio = (sub["score"] / sub["refit_lower"])[sub["refit_lower"] > 0.1]  # not near 0
        q = np.percentile(ratio, [50, 5, 95]) if ratio.size else [np.nan] * 3
        rate = sub["rate"] if "rate" in sub else np.nan
        print(f"{name:<14}{len(sub):>5}{low.sum():>9}{(low & (rate < 0.1)).sum():>11}"
              f"{sub['score_warned'].sum():>7}{(sub['spikes'] > 0).sum():>6}"
              f"{sub['spikes'].sum():>7}{sub['min_train_mi'].min():>10.3g}"
              f"{q[0]:>12.2f} [{q[1]:.2f}, {q[2]:.2f}] (n={ratio.size})")


def main():
    args = parse_args(__doc__, dict(datasets="wine", seeds="0", threads="1", alphas="1.0"),
                      datasets="digits,wine,breast_cancer,mnist", seeds="0,1,2,3,4",
                      threads="1,2", alphas="0.0,1.0,10.0", out=(None, "CSV to append rows to"),
                      default_max_iter=(False, "max_iter and the stopping rule at their defaults"),
                      summary=([], "only summarise these CSVs"))
    if args.summary:
        return summary(args.summary)
    header()
    data = {d: load_split(d, 5000, MinMaxScaler if d == "digits" else None)
            for d in args.datasets.split(",")}
    print(",".join(FIELDS))
    for dataset, alpha, seed, threads in itertools.product(
            data, numbers(args.alphas, float), numbers(args.seeds), numbers(args.threads)):
        row = fit_one(dataset, *data[dataset][:2], alpha, seed, threads, args.default_max_iter)
        print(",".join(str(row[f]) for f in FIELDS), flush=True)
        if args.out:
            pd.DataFrame([row]).to_csv(args.out, mode="a", index=False,
                                       header=not os.path.exists(args.out))


if __name__ == "__main__":
    main()
