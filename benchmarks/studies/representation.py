"""Representation benchmark: PCA vs plain VAE (alpha=0) vs InfoMax VAE.

Per dataset, latent size, beta, alpha and seed: fit on a stratified, seeded
70/30 split; on the held-out 30%, linear-probe and 5-NN accuracy (trained on
the train codes), reconstruction MSE, active units (posterior-mean variance
>= 0.05), MI lower bound (trained critic) and rate upper bound. One CSV row
per fit; mean +- sd over seeds as a markdown table at the end, or of earlier
CSVs with ``--summary``. What docs/science.md reports::

    PYTHONPATH=. python benchmarks/studies/representation.py --part 0/2 --out r0.csv &
    PYTHONPATH=. python benchmarks/studies/representation.py --part 1/2 --out r1.csv
    PYTHONPATH=. python benchmarks/studies/representation.py --summary r0.csv r1.csv
"""

import itertools
import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_split, md_head, md_row, mean_se, numbers, parse_args, probes
from skinfomax import InfoMaxVAETransformer, active_units


# MNIST through the conv networks: 28x28 images, the estimator's default channels.
CONV = dict(architecture="conv", image_shape=(1, 28, 28))


def fit_params(dataset, args):
    """The estimator's parameters beside n_components, alpha and beta: Bernoulli for MNIST
    (``mnist_conv``: conv networks), Gaussian for the rest, ``--critic-lr``; ``--defaults``
    leaves batch size, epochs and stopping rule at the estimator's defaults."""
    mnist = dataset.startswith("mnist")
    params = dict(likelihood="bernoulli" if mnist else "gaussian",
                  critic_learning_rate=args.critic_lr,
                  **(CONV if dataset == "mnist_conv" else {}))
    if not args.defaults:
        params.update(batch_size=128 if mnist else 64,
                      max_iter=args.mnist_epochs if mnist else args.tabular_epochs)
    return params


def run_one(data, dataset, d, beta, model, seed, args):
    X_tr, X_te, y_tr, y_te = data
    row, t0 = dict(dataset=dataset, d=d, beta=beta, model=model, seed=seed), time.time()
    if model == "pca":
        pca = PCA(min(d, X_tr.shape[1]), random_state=seed).fit(X_tr)
        Z_tr, Z_te = pca.transform(X_tr), pca.transform(X_te)
        row["recon_mse"] = float(np.mean((X_te - pca.inverse_transform(Z_te)) ** 2))
    else:
        vae = InfoMaxVAETransformer(
            n_components=d, alpha=float(model.split("=")[1]), beta=beta, device="cpu",
            random_state=seed, **fit_params(dataset, args)).fit(X_tr)
        Z_tr, Z_te = vae.transform(X_tr), vae.transform(X_te)
        b = vae.mi_bounds(X_te)
        row.update(epochs=vae.n_iter_,
                   recon_mse=float(np.mean((X_te - vae.inverse_transform(Z_te)) ** 2)),
                   active_units=int(active_units(Z_te).sum()),
                   mi_lower=b.lower, mi_lower_se=b.lower_se, mi_upper=b.upper)
        if args.refit:
            r = vae.mi_bounds(X_te, refit_critic=True)
            row.update(mi_refit=r.lower, mi_refit_se=r.lower_se, mi_upper_half=r.upper)
    scores = probes(Z_tr, y_tr, Z_te, y_te)
    row.update(linear_probe=scores["probe"], knn5=scores["knn5_std"], seconds=time.time() - t0)
    return row


def summary(df):
    cols = [c for c in ["linear_probe", "knn5", "recon_mse", "active_units", "mi_lower",
                        "mi_upper", "mi_refit"] if c in df]
    g = df.groupby(["dataset", "d", "beta", "model"], sort=True)[cols]
    mean, sd = g.mean(), g.std()
    out = mean.copy().astype(object)
    for c in cols:
        out[c] = [f"{m:.3g} ± {s:.2g}" if np.isfinite(m) else "" for m, s in zip(mean[c], sd[c])]
    out["n"] = g.size()
    table = out.reset_index().astype(str)
    md_head(*table.columns)
    for row in table.itertuples(index=False):
        md_row(*row)


def acceptance(df, metrics=("linear_probe", "knn5", "active_units")):
    """Each alpha > 0 against the plain VAE (alpha = 0) in every (dataset, d, beta) cell:
    the mean paired difference over seeds and its standard error, "worse" where it is below
    -1 standard error; in cells where the plain VAE collapses (active units below d / 2),
    "ahead" where it is above 2 standard errors, else "not ahead"."""
    print("\nAgainst the plain VAE: mean paired difference over seeds (standard error)")
    md_head("dataset", "d", "beta", "model", "n", *metrics, "plain collapses", "verdict")
    vaes = df[df.model.str.startswith("alpha=")]
    for (dataset, d, beta), cell in vaes.groupby(["dataset", "d", "beta"], sort=True):
        plain = cell[cell.model == "alpha=0"].set_index("seed")
        collapsed = plain.active_units.mean() < d / 2
        for model, runs in cell[cell.model != "alpha=0"].groupby("model", sort=False):
            runs = runs.set_index("seed")
            seeds = runs.index.intersection(plain.index)
            if seeds.empty:  # a part of the jobs: no seed with both models
                continue
            cells, verdict = [], []
            for metric in metrics:
                diff, se = mean_se(runs.loc[seeds, metric] - plain.loc[seeds, metric])
                cells.append(f"{diff:+.3f} ({se:.3f})")
                if diff < -se:
                    verdict.append(f"worse {metric}")
                if collapsed and not diff > 2 * se:
                    verdict.append(f"not ahead {metric}")
            md_row(dataset, d, beta, model, len(seeds), *cells, "yes" if collapsed else "no",
                   ", ".join(verdict) or "ok")


def main():
    args = parse_args(__doc__, dict(datasets="wine", latents="2", alphas="0,1", betas="1",
                                    seeds="0", tabular_epochs=2, out=os.devnull),
                      datasets="mnist,breast_cancer,wine", latents="2,10,32", betas="1,4",
                      alphas="0,1,10", seeds="0,1,2", n_mnist=3000, mnist_epochs=20,
                      tabular_epochs=100, critic_lr=1e-3,
                      refit=(False, "also a fresh critic on the frozen encoder"),
                      defaults=(False, "batch size, epochs and stopping rule at the "
                                       "estimator's defaults"),
                      part=("0/1", "i/k: run every k-th job starting at i"),
                      out="representation.csv", summary=([], "only summarise these CSVs"))
    if args.summary:
        df = pd.concat([pd.read_csv(path) for path in args.summary])
        return summary(df), acceptance(df)
    header(threads=1)
    betas = numbers(args.betas, float)
    models = ["pca"] + [f"alpha={a:g}" for a in numbers(args.alphas, float)]
    jobs = [j for j in itertools.product(args.datasets.split(","), numbers(args.latents), betas,
                                         models, numbers(args.seeds))
            if not (j[3] == "pca" and j[2] != betas[0])]
    cache, rows, (i, k) = {}, [], numbers(args.part.replace("/", ","))
    for dataset, d, beta, model, seed in jobs[i::k]:
        if dataset not in cache:
            mnist = dataset.startswith("mnist")  # tabular data: standardised
            cache[dataset] = load_split("mnist" if mnist else dataset, args.n_mnist,
                                        None if mnist else StandardScaler)
        rows.append(run_one(cache[dataset], dataset, d, beta, model, seed, args))
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print()
    summary(pd.DataFrame(rows))
    acceptance(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
