"""Fewer, better steps: a default fit against a learning-rate decay on plateau, larger batches
with a matching learning rate and ``torch.compile``, for docs/performance.md ("Fewer steps").

Every variant is a fit as a user runs it (``n_components``, ``likelihood`` and the variant's
parameters set, everything else default, so the stopping rule ends it), timed, then scored on
new rows: linear probe, 5-NN and trustworthiness (5 neighbours, at most 10,000 rows). Variants
run in turn within each seed (round), so the machine's drift spreads over all of them:

- ``default``: the defaults.
- ``plateau``: the default fit, then, where the rule stopped it, ``learning_rate / 5`` until the
  rule stops again (scikit-learn MLP's ``learning_rate="adaptive"`` divides by 5 on a plateau);
  the continuation may stop from its first epochs (the step floor is lifted for it).
- ``b256_sqrt`` / ``b256_linear``: batch 256 with the learning rate times sqrt(2) / times 2.
- ``b32_sqrt``: batch 32 with the learning rate halved (small data: 4x the steps per epoch).
- ``compiled``: ``compile=True`` (its first round pays the compilation in this process).

Data: ``mnist50k`` (50,000 fitted and 10,000 new MNIST digits, Bernoulli, as compare_umap) or
the stratified 70/30 splits of ``_common.load_split`` (tabular data standardised);
``--latents`` components (10)::

    PYTHONPATH=. python benchmarks/studies/fewer_steps.py --datasets mnist50k --seeds 0,1
    PYTHONPATH=. python benchmarks/studies/fewer_steps.py --datasets digits,wine \\
        --variants default,plateau,b32_sqrt --seeds 0,1,2
"""

import math
import os
import sys

import numpy as np
from sklearn.manifold import trustworthiness
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_after, load_split, md_head, md_row, numbers, parse_args, probes
from _common import quiet, timed
from skinfomax import InfoMaxVAETransformer
from skinfomax import _training

VARIANTS = {
    "default": {},
    "plateau": {},
    "b256_sqrt": dict(batch_size=256, learning_rate=1e-3 * math.sqrt(2)),
    "b256_linear": dict(batch_size=256, learning_rate=2e-3),
    "b32_sqrt": dict(batch_size=32, learning_rate=5e-4),
    "compiled": dict(compile=True),
}


def continue_on_plateau(vae, X):
    """Continue a stopped fit at a fifth of the learning rate until the rule stops it again."""
    if vae.n_iter_ == vae.max_iter:  # the rule did not stop it
        return
    floor = _training.MIN_STOPPING_STEPS
    _training.MIN_STOPPING_STEPS = 0
    try:
        first = vae.n_iter_
        vae.set_params(warm_start=True, learning_rate=vae.learning_rate / 5,
                       max_iter=vae.max_iter - first).fit(X)  # n_iter_ counts both calls
    finally:
        _training.MIN_STOPPING_STEPS = floor


def run(name, variant, seed, split, d):
    X, X_new, y, y_new = split
    params = dict(likelihood="bernoulli") if name.startswith("mnist") else {}
    vae = InfoMaxVAETransformer(n_components=d, random_state=seed, **params,
                                **VARIANTS[variant])

    def fit():
        vae.fit(X)
        if variant == "plateau":
            continue_on_plateau(vae, X)

    seconds = timed(fit)[0]
    Z, Z_new = vae.transform(X), vae.transform(X_new)
    scores = probes(Z, y, Z_new, y_new)
    trust = trustworthiness(X_new[:10_000], Z_new[:10_000], n_neighbors=5)
    return dict(seconds=seconds, epochs=vae.n_iter_, probe=scores["probe"],
                knn=scores["knn5"], trust=float(trust))


def main():
    args = parse_args(__doc__, dict(datasets="wine", seeds="0", variants="default,plateau"),
                      datasets="mnist50k", seeds="0,1", n_mnist=3000, latents=10,
                      variants="default,plateau,b256_sqrt,b256_linear,compiled")
    header()
    variants = args.variants.split(",")
    for name in args.datasets.split(","):
        split = load_split(name, args.n_mnist, None if name.startswith("mnist") else StandardScaler)
        results = {v: [] for v in variants}
        with quiet():
            InfoMaxVAETransformer(max_iter=1).fit(split[0][:256])  # the process's first-fit costs
            for seed in numbers(args.seeds):
                for variant in variants:
                    results[variant].append(run(name, variant, seed, split, args.latents))
                    print(name, "seed", seed, variant, {k: round(v, 4) for k, v in
                                                        results[variant][-1].items()}, flush=True)
        print(f"\n{name}, {args.latents} components, seeds {args.seeds}: mean (standard error"
              " over seeds); time relative to `default` of the same seed")
        md_head("variant", "epochs", "fit s", "time / default", "probe", "5-NN", "trust")
        for variant in variants:
            rows = results[variant]
            cells = [variant, "/".join(str(r["epochs"]) for r in rows)]
            ratios = [r["seconds"] / d["seconds"] for r, d in zip(rows, results["default"])] \
                if "default" in results else [math.nan]
            cells += [f"{np.mean([r['seconds'] for r in rows]):.1f}", f"{np.mean(ratios):.2f}"]
            for key in ("probe", "knn", "trust"):
                values = [r[key] for r in rows]
                se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
                cells.append(f"{np.mean(values):.3f} ({se:.3f})")
            md_row(*cells)
    load_after()


if __name__ == "__main__":
    main()
