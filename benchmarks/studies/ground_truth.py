"""Ground-truth check of `skinfomax.mutual_information`.

1. Linear-Gaussian channels z = x + n, x ~ N(0, I_d), n ~ N(0, s^2 I_d), with
   s^2 chosen so that I(x; z) = d/2 log(1 + 1/s^2) hits each target value.
2. With ``--bmi-dir``: the samples exported by ``studies/bmi_export.py`` from
   the `benchmark-mi` tasks, next to that package's KSG and CCA.

Markdown tables of true MI, estimate +- SE (error) [chosen critic]; ``--set``
passes other keywords of mutual_information::

    PYTHONPATH=. python benchmarks/studies/ground_truth.py --dims 1,5,20 --mis 0.5,2,5
    PYTHONPATH=. python benchmarks/studies/ground_truth.py --skip-grid --bmi-dir /tmp/bmi
"""

import ast
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, md_head, md_row, numbers, parse_args
from skinfomax import mutual_information


def linear_gaussian(d, mi, n, seed):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    return x, x + np.sqrt(1.0 / np.expm1(2.0 * mi / d)) * rng.randn(n, d)


def estimates(x, z, truth, estimators, options):
    """One cell per estimator, then the wall seconds (and load) of them all."""
    start, cells = time.time(), []
    for estimator in estimators:
        r = mutual_information(x, z, estimator, **options)
        c = r.critic  # the candidate chosen, where there was a choice
        chosen = (f" [{c.sizes[0]}{'' if c.weight_decay else ', no decay'}]"
                  if r.validation_mi else "")
        cells.append(f"{r.mi:.3f} ± {r.se:.3f} ({100 * (r.mi - truth) / truth:+.1f}%){chosen}")
    return cells + [f"{time.time() - start:.0f} ({os.getloadavg()[0]:.1f})"]


def main():
    args = parse_args(__doc__, dict(dims="2", mis="1", estimators="nwj", n=400,
                                    set=["max_iter=20", "n_critics=1", "n_folds=2"]),
                      dims="1,5,20", mis="0.1,0.5,1,2,5", estimators="nwj,dv", n=5000,
                      bmi_dir=None, skip_grid=False, seed=(0, "mutual_information's random_state"),
                      tasks=(None, "comma-separated substrings of bmi task names"),
                      set=([], "NAME=VALUE ...: other mutual_information keywords, each VALUE a "
                               "Python literal, e.g. --set max_iter=100 scaling='quantile'"))
    options = dict(random_state=args.seed)
    options.update((k, ast.literal_eval(v)) for k, v in (a.split("=", 1) for a in args.set))
    estimators = args.estimators.split(",")
    header(f"n={args.n} samples; options {options}, mutual_information defaults otherwise",
           threads=1)
    if not args.skip_grid:
        md_head("d", "true MI", *estimators, "s (wall, load)")
        for d in numbers(args.dims):
            for mi in numbers(args.mis, float):
                x, z = linear_gaussian(d, mi, args.n, seed=d)
                md_row(d, f"{mi:g}", *estimates(x, z, mi, estimators, options))
    if args.bmi_dir:
        print()
        md_head("bmi task", "true MI", *estimators, "KSG (bmi)", "CCA (bmi)", "s (wall, load)")
        for path in sorted(glob.glob(os.path.join(args.bmi_dir, "*.npz"))):
            if args.tasks and not any(t in path for t in args.tasks.split(",")):
                continue
            f, name = np.load(path), os.path.basename(path)[:-4]
            cells = estimates(f["X"], f["Y"], float(f["mi_true"]), estimators, options)
            md_row(name, f"{float(f['mi_true']):.3f}", *cells[:-1], f"{float(f['ksg']):.3f}",
                   f"{float(f['cca']):.3f}", cells[-1])


if __name__ == "__main__":
    main()
