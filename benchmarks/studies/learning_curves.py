"""Learning curves at the defaults, for choosing ``fit``'s stopping rule (docs/performance.md,
"When fit stops").

Per data set and seed: one fit with ``tol=None`` (every epoch runs), continued by ``warm_start``
every ``--every`` epochs (it continues exactly), recording each epoch's training loss and at
each checkpoint the held-out linear probe, 5-NN and trustworthiness (5 neighbours, at most
10,000 new rows). Data: the stratified 70/30 split of ``_common.load_split`` (tabular data
standardised, ``--n-mnist`` digits; Bernoulli for MNIST), or ``mnist50k``: 50,000 fitted and
10,000 new MNIST digits as in compare_umap. ``conv`` is MNIST with the conv networks. One
JSON line per fit; ``--summary`` replays the rule at ``--tols`` x ``--patiences`` on them::

    PYTHONPATH=. python benchmarks/studies/learning_curves.py --datasets wine,digits --out c.jsonl
    PYTHONPATH=. python benchmarks/studies/learning_curves.py --summary c.jsonl
"""

import json
import os
import sys

import numpy as np
import torch
from sklearn.manifold import trustworthiness
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_split, numbers, parse_args, probes, quiet, timed
from skinfomax import InfoMaxVAETransformer
from skinfomax._training import MIN_STOPPING_STEPS
from skinfomax._utils import EarlyStopping


def data(name, n_mnist):
    name = "mnist" if name == "conv" else name
    return load_split(name, n_mnist, None if name.startswith("mnist") else StandardScaler)


def curve(name, d, seed, args):
    X, X_new, y, y_new = data(name, args.n_mnist)
    params = dict(likelihood="bernoulli") if name in ("mnist", "mnist50k", "conv") else {}
    if name == "conv":
        params.update(architecture="conv", image_shape=(1, 28, 28))
    vae = InfoMaxVAETransformer(n_components=d, max_iter=args.every, tol=None,
                                precision=args.precision, random_state=seed, **params)
    seconds, checks = 0.0, []
    while len(checks) * args.every < args.epochs:
        seconds += timed(lambda: vae.set_params(warm_start=bool(checks)).fit(X))[0]
        Z, Z_new = vae.transform(X), vae.transform(X_new)
        scores = probes(Z, y, Z_new, y_new)
        checks.append(dict(epoch=vae.n_iter_, seconds=round(seconds, 1), probe=scores["probe"],
                           knn=scores["knn5"], trust=float(trustworthiness(
                               X_new[:10_000], Z_new[:10_000], n_neighbors=5))))
        print(name, d, seed, checks[-1], flush=True)
    return dict(dataset=name, d=d, seed=seed, precision=args.precision,
                steps_per_epoch=max(1, len(X) // vae.batch_size_),
                losses=[h["loss"] for h in vae.history_], checks=checks)


def stop_epoch(record, tol, patience, floor):
    """Where the rule (``EarlyStopping``, relative, after ``floor`` steps) ends the fit."""
    rule = EarlyStopping([], patience, tol, relative=True)
    for epoch, loss in enumerate(record["losses"], 1):
        rule.update(torch.tensor([-loss]), may_stop=epoch * record["steps_per_epoch"] >= floor)
        if bool(rule.stopped):
            return epoch
    return len(record["losses"])


def summary(paths, tols, patiences, floor):
    records = [json.loads(line) for path in paths for line in open(path)]
    print("Rule replayed on the recorded curves: the stop epoch, and the change in probe,"
          " 5-NN and trustworthiness from the last epoch's codes at the last checkpoint"
          f" before it (mean over seeds); no stop before {floor} steps.")
    for tol in tols:
        for patience in patiences:
            print(f"tol={tol:g}, n_iter_no_change={patience}:")
            groups = {}
            for r in records:
                groups.setdefault((r["dataset"], r["d"], r["precision"]), []).append(r)
            for (name, d, precision), group in sorted(groups.items()):
                stops = [stop_epoch(r, tol, patience, floor) for r in group]
                at = [[c for c in r["checks"] if c["epoch"] <= e][-1] for r, e in
                      zip(group, stops)]
                delta = {k: np.mean([a[k] - r["checks"][-1][k] for a, r in zip(at, group)])
                         for k in ("probe", "knn", "trust")}
                print(f"  {name:<14} d={d:<3} {precision:<9} {group[0]['steps_per_epoch']:>4} "
                      f"steps/epoch  stops at {stops} of {len(group[0]['losses'])}  "
                      + "  ".join(f"{k} {v:+.3f}" for k, v in delta.items()))


def main():
    args = parse_args(__doc__, dict(datasets="wine", latents="2", seeds="0", epochs=4, every=2,
                                    out=os.devnull),
                      datasets="wine,breast_cancer,digits,mnist", latents="10,2", seeds="0,1,2",
                      epochs=100, every=5, n_mnist=3000, precision="float32",
                      out="learning_curves.jsonl", summary=([], "only replay the rule on these"),
                      tols=([0.02], "rule thresholds to replay"),
                      patiences=([5], "rule patiences to replay"),
                      floor=(MIN_STOPPING_STEPS, "steps before which the rule may not stop"))
    if args.summary:
        return summary(args.summary, [float(t) for t in args.tols],
                       [int(p) for p in args.patiences], args.floor)
    header()
    with open(args.out, "a") as out, quiet():
        for name in args.datasets.split(","):
            for d in numbers(args.latents):
                for seed in numbers(args.seeds):
                    out.write(json.dumps(curve(name, d, seed, args)) + "\n")
                    out.flush()


if __name__ == "__main__":
    main()
