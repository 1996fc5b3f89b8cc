"""What the MI term does to the posterior and the codes, against the other ways to keep
information (docs/science.md, section 4, "What the MI term does to the posterior").

Per variant and seed: a fit at the defaults but for the variant's parameters, on the stratified
70/30 split of ``_common.load_split`` (``--n-mnist`` MNIST digits, Bernoulli; tabular data
standardised), 10 components (``--latents``); on the held-out rows: linear probe, 5-NN (on
standardised codes, as representation.py), trustworthiness (5 neighbours), active units
(``skinfomax.active_units``), the spread of the posterior means (their standard deviation
over rows, averaged over units), the posterior standard deviation (averaged over rows and
units), the rate (``mi_bounds().upper``), ``score`` and the fit's seconds. Variants:

- ``plain``: alpha 0.  ``default``: alpha 1.  ``alpha10``: alpha 10.
- ``beta_half``: alpha 0, beta halved (the other way to let more information through).
- ``alpha10_clr1e-5``: alpha 10 with the paper's critic learning rate (1e-5).
- ``alpha10_dv`` / ``alpha10_infonce``: alpha 10 on the DV / InfoNCE bound.
- ``alpha10_info2``: alpha 10 with 2 of the components as info codes (no KL on them).

One CSV row per fit (``--out``); ``--summary`` tabulates mean (standard error) over seeds::

    PYTHONPATH=. python benchmarks/studies/mi_term.py --out mi_term.csv
    PYTHONPATH=. python benchmarks/studies/mi_term.py --summary mi_term.csv
"""

import os
import sys

import numpy as np
import pandas as pd
from sklearn.manifold import trustworthiness
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_split, md_head, md_row, numbers, parse_args, probes, quiet
from _common import mean_se, timed
from skinfomax import InfoMaxVAETransformer, active_units
from skinfomax._evaluation import encode

VARIANTS = {
    "plain": dict(alpha=0.0),
    "default": dict(alpha=1.0),
    "alpha10": dict(alpha=10.0),
    "beta_half": dict(alpha=0.0, beta_scale=0.5),
    "alpha10_clr1e-5": dict(alpha=10.0, critic_learning_rate=1e-5),
    "alpha10_dv": dict(alpha=10.0, mi_estimator="dv"),
    "alpha10_infonce": dict(alpha=10.0, mi_estimator="infonce"),
    "alpha10_info2": dict(alpha=10.0, info=2),
}
METRICS = ["probe", "knn5", "trust", "active_units", "means_sd", "posterior_sd", "rate",
           "score", "seconds"]


def run_one(split, dataset, d, beta, variant, seed):
    X, X_new, y, y_new = split
    params = dict(VARIANTS[variant])
    beta = beta * params.pop("beta_scale", 1.0)
    info = params.pop("info", 0)
    vae = InfoMaxVAETransformer(n_components=d - info, n_info_components=info, beta=beta,
                                random_state=seed, **params,
                                **({"likelihood": "bernoulli"} if dataset == "mnist" else {}))
    seconds = timed(lambda: vae.fit(X))[0]
    Z, Z_new = vae.transform(X), vae.transform(X_new)
    mean, log_var, _ = encode(vae._engine, X_new)
    scores = probes(Z, y, Z_new, y_new)
    return dict(dataset=dataset, d=d, beta=beta, variant=variant, seed=seed,
                probe=scores["probe"], knn5=scores["knn5_std"],
                trust=float(trustworthiness(X_new, Z_new, n_neighbors=5)),
                active_units=int(active_units(mean).sum()) + info,
                means_sd=float(mean.std(axis=0).mean()),
                posterior_sd=float(np.exp(0.5 * log_var).mean()),
                rate=vae.mi_bounds(X_new).upper, score=vae.score(X_new), seconds=seconds)


def summary(rows):
    groups = rows.groupby(["dataset", "d", "beta", "variant"], sort=False)
    md_head("dataset", "d", "beta", "variant", "n", *METRICS)
    for (dataset, d, beta, variant), g in groups:
        cells = []
        for m in METRICS:
            mean, se = mean_se(g[m])
            cells.append(f"{mean:.3g} ({0.0 if np.isnan(se) else se:.2g})")
        md_row(dataset, d, f"{beta:g}", variant, len(g), *cells)


def main():
    args = parse_args(__doc__, dict(datasets="wine", seeds="0", variants="plain,alpha10_info2"),
                      datasets="mnist", latents="10", betas="1", seeds="0,1,2", n_mnist=5000,
                      variants=",".join(VARIANTS), out=(os.devnull, "CSV to append rows to"),
                      summary=([], "only summarise these CSVs"))
    if args.summary:
        return summary(pd.concat([pd.read_csv(p) for p in args.summary]))
    header()
    rows = []
    for dataset in args.datasets.split(","):
        split = load_split(dataset, args.n_mnist, None if dataset == "mnist" else StandardScaler)
        for d in numbers(args.latents):
            for beta in numbers(args.betas, float):
                for seed in numbers(args.seeds):  # variants in turn within a seed: drift spreads
                    for variant in args.variants.split(","):
                        with quiet():
                            rows.append(run_one(split, dataset, d, beta, variant, seed))
                        print({k: (round(v, 4) if isinstance(v, float) else v)
                               for k, v in rows[-1].items()}, flush=True)
                        pd.DataFrame(rows[-1:]).to_csv(
                            args.out, mode="a", index=False,
                            header=not os.path.exists(args.out) or not os.path.getsize(args.out))
    print()
    summary(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
