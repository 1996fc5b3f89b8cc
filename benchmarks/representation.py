"""Representation benchmark: PCA vs plain VAE (alpha=0) vs InfoMax VAE.

Per dataset, latent size, beta, alpha and seed: fit on a stratified, seeded
70/30 split; on the held-out 30%, linear-probe and 5-NN accuracy (trained on
the train codes), reconstruction MSE, active units (posterior-mean variance
>= 0.05), MI lower bound (trained critic) and rate upper bound. One CSV row
per fit; mean +- sd over seeds as a markdown table at the end, or of earlier
CSVs with ``--summary``.

Example (what docs/science.md reports)::

    PYTHONPATH=. python benchmarks/representation.py --part 0/2 --out r0.csv &
    PYTHONPATH=. python benchmarks/representation.py --part 1/2 --out r1.csv
    PYTHONPATH=. python benchmarks/representation.py --summary r0.csv r1.csv
"""

import argparse
import itertools
import os
import time

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _common import header, numbers, parse_args
from skinfomax import InfoMaxVAETransformer, active_units, load_mnist


def load(name, n_mnist):
    if name == "mnist":
        X, y = load_mnist(n_mnist, random_state=0)
        X = X.astype(np.float64)
    elif name == "breast_cancer":
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "wine":
        X, y = load_wine(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    if name != "mnist":  # tabular: standardise with the train part
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    return X_tr, X_te, y_tr, y_te


def probes(Z_tr, Z_te, y_tr, y_te):
    lin = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Z_tr, y_tr)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(5)).fit(Z_tr, y_tr)
    return lin.score(Z_te, y_te), knn.score(Z_te, y_te)


def run_one(data, dataset, d, beta, model, seed, args):
    X_tr, X_te, y_tr, y_te = data
    row, t0 = dict(dataset=dataset, d=d, beta=beta, model=model, seed=seed), time.time()
    if model == "pca":
        pca = PCA(min(d, X_tr.shape[1]), random_state=seed).fit(X_tr)
        Z_tr, Z_te = pca.transform(X_tr), pca.transform(X_te)
        row["recon_mse"] = float(np.mean((X_te - pca.inverse_transform(Z_te)) ** 2))
    else:
        alpha = float(model.split("=")[1])
        vae = InfoMaxVAETransformer(
            n_components=d, alpha=alpha, beta=beta,
            likelihood="bernoulli" if dataset == "mnist" else "gaussian",
            batch_size=128 if dataset == "mnist" else 64,
            max_iter=args.epochs[dataset],
            critic_learning_rate=args.critic_lr,
            device="cpu", random_state=seed,
        ).fit(X_tr)
        Z_tr, Z_te = vae.transform(X_tr), vae.transform(X_te)
        b = vae.mi_bounds(X_te)
        row.update(
            recon_mse=float(np.mean((X_te - vae.inverse_transform(Z_te)) ** 2)),
            active_units=int(active_units(Z_te).sum()),
            mi_lower=b.lower, mi_lower_se=b.lower_se, mi_upper=b.upper,
        )
        if args.refit:
            r = vae.mi_bounds(X_te, refit_critic=True)
            row.update(mi_refit=r.lower, mi_refit_se=r.lower_se, mi_upper_half=r.upper)
    row["linear_probe"], row["knn5"] = probes(Z_tr, Z_te, y_tr, y_te)
    row["seconds"] = time.time() - t0
    return row


def summary(df):
    cols = [c for c in ["linear_probe", "knn5", "recon_mse", "active_units", "mi_lower",
                        "mi_upper", "mi_refit"] if c in df]
    g = df.groupby(["dataset", "d", "beta", "model"], sort=True)[cols]
    mean, sd, n = g.mean(), g.std(), g.size()
    out = mean.copy().astype(object)
    for c in cols:
        out[c] = [f"{m:.3g} ± {s:.2g}" if np.isfinite(m) else "" for m, s in zip(mean[c], sd[c])]
    out["n"] = n
    table = out.reset_index().astype(str)
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(row) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", nargs="*", metavar="CSV")
    args = parse_args(parser, dict(datasets="wine", latents="2", alphas="0,1", betas="1",
                                    seeds="0", tabular_epochs=2, out=os.devnull),
                      datasets="mnist,breast_cancer,wine", latents="2,10,32", betas="1,4",
                      alphas="0,1,10", seeds="0,1,2", n_mnist=3000, mnist_epochs=20,
                      tabular_epochs=100, critic_lr=1e-3,
                      refit=(False, "also a fresh critic on the frozen encoder"),
                      part=("0/1", "i/k: run every k-th job starting at i"),
                      out="representation.csv")
    if args.summary:
        return summary(pd.concat([pd.read_csv(path) for path in args.summary]))
    header(threads=1)
    args.epochs = {"mnist": args.mnist_epochs, "breast_cancer": args.tabular_epochs,
                   "wine": args.tabular_epochs}
    betas = numbers(args.betas, float)
    models = ["pca"] + [f"alpha={a:g}" for a in numbers(args.alphas, float)]
    jobs = [j for j in itertools.product(args.datasets.split(","), numbers(args.latents), betas,
                                         models, numbers(args.seeds))
            if not (j[3] == "pca" and j[2] != betas[0])]
    i, k = (int(v) for v in args.part.split("/"))
    cache, rows = {}, []
    for dataset, d, beta, model, seed in jobs[i::k]:
        if dataset not in cache:
            cache[dataset] = load(dataset, args.n_mnist)
        rows.append(run_one(cache[dataset], dataset, d, beta, model, seed, args))
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print()
    summary(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
