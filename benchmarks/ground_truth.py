"""Ground-truth check of `skinfomax.mutual_information`.

1. Linear-Gaussian channels z = x + n, x ~ N(0, I_d), n ~ N(0, s^2 I_d), with
   s^2 chosen so that I(x; z) = d/2 log(1 + 1/s^2) hits each target value.
2. With ``--bmi-dir``: the samples exported by ``benchmarks/bmi_export.py``
   from the `benchmark-mi` tasks, next to that package's KSG and CCA.

Prints markdown tables (true MI, estimate +- SE, relative error)::

    PYTHONPATH=. python benchmarks/ground_truth.py --bmi-dir /tmp/bmi-samples
"""

import argparse
import ast
import glob
import os
import subprocess
import time

import numpy as np

from _common import header, numbers, parse_args
from skinfomax import mutual_information


def linear_gaussian(d, mi, n, seed):
    rng = np.random.RandomState(seed)
    noise_var = 1.0 / np.expm1(2.0 * mi / d)
    x = rng.randn(n, d)
    return x, x + np.sqrt(noise_var) * rng.randn(n, d)


def fmt(r, truth):
    c = r.critic
    chosen = (f" [{c.sizes[0]}{'' if c.weight_decay else ', no decay'}]" if r.validation_mi
              else "")
    return f"{r.mi:.3f} ± {r.se:.3f} ({100 * (r.mi - truth) / truth:+.1f}%){chosen}"


def elapsed(start):
    return f"{time.time() - start:.0f} ({os.getloadavg()[0]:.1f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scaling", default="standard", choices=["standard", "quantile"])
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--n-critics", type=int)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any other mutual_information keyword, VALUE a Python literal "
                        "(repeatable), e.g. --set max_iter=100")
    args = parse_args(p, dict(dims="2", mis="1", estimators="nwj", n=400,
                              set=["max_iter=20", "n_critics=1", "n_folds=2"]),
                      dims="1,5,20", mis="0.1,0.5,1,2,5", estimators="nwj,dv", n=5000,
                      bmi_dir=None, skip_grid=False, seed=(0, "mutual_information's random_state"),
                      critics=(None, '"auto", or widths such as 32,256 (two-layer critics to '
                                     "choose from); unset options take mutual_information's "
                                     "defaults"),
                      tasks=(None, "comma-separated substrings of bmi task names"))
    options = dict(scaling=args.scaling, random_state=args.seed)
    for name, value in (a.split("=", 1) for a in args.set):
        options[name] = ast.literal_eval(value)
    for name in ("weight_decay", "n_critics"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.critics == "auto":
        options["critic_hidden_layer_sizes"] = "auto"
    elif args.critics:
        options["critic_hidden_layer_sizes"] = [(int(w), int(w)) for w in args.critics.split(",")]
    estimators = args.estimators.split(",")
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    header(f"checkout: {revision.stdout.strip() or 'unknown'}; n={args.n} samples; options "
           f"{options}, mutual_information defaults otherwise", threads=1)
    if not args.skip_grid:
        print("| d | true MI | " + " | ".join(estimators) + " | s (wall, load) |")
        print("|---|---|" + "---|" * (len(estimators) + 1))
        for d in numbers(args.dims):
            for mi in numbers(args.mis, float):
                x, z = linear_gaussian(d, mi, args.n, seed=d)
                start = time.time()
                cells = [fmt(mutual_information(x, z, e, **options), mi) for e in estimators]
                print(f"| {d} | {mi:g} | " + " | ".join(cells) + f" | {elapsed(start)} |",
                      flush=True)
    if args.bmi_dir:
        print("\n| bmi task | true MI | " + " | ".join(estimators) + " | KSG (bmi) | CCA (bmi) "
              "| s (wall, load) |")
        print("|---|---|" + "---|" * (len(estimators) + 3))
        for path in sorted(glob.glob(os.path.join(args.bmi_dir, "*.npz"))):
            if args.tasks and not any(t in path for t in args.tasks.split(",")):
                continue
            f = np.load(path)
            truth = float(f["mi_true"])
            start = time.time()
            cells = [fmt(mutual_information(f["X"], f["Y"], e, **options), truth)
                     for e in estimators]
            name = os.path.basename(path)[:-4]
            print(f"| {name} | {truth:.3f} | " + " | ".join(cells) +
                  f" | {float(f['ksg']):.3f} | {float(f['cca']):.3f} | {elapsed(start)} |",
                  flush=True)


if __name__ == "__main__":
    main()
