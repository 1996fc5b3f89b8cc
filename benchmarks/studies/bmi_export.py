"""Export `benchmark-mi` tasks (samples, true MI, KSG, CCA) to .npz files, in bmi's venv.

Runs in benchmark-mi's own virtual environment (never a skinfomax dependency) and
writes one ``.npz`` per task for ``studies/ground_truth.py --bmi-dir`` to read::

    python3 -m venv /work/bmi-venv
    /work/bmi-venv/bin/pip install jax==0.4.30 jaxlib==0.4.30 numpy==1.26.4 benchmark-mi
    /work/bmi-venv/bin/python benchmarks/studies/bmi_export.py --out /tmp/bmi-samples

``--quick`` exports two tasks of 200 samples to a temporary folder. Imports
nothing of skinfomax or of the other benchmarks: that venv has neither.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

TASKS = ([f"multinormal-dense-{d}-{d}-0.5" for d in (2, 3, 5, 25)]
         + [f"multinormal-sparse-{d}-{d}-2-2.0" for d in (2, 3, 5, 25)]
         + [f"student-identity-{d}-{d}-{dof}" for d, dof in ((1, 1), (2, 1), (3, 2), (5, 2))]
         + [f"{kind}-multinormal-sparse-{d}-{d}-2-2.0"
            for kind in ("spiral", "half_cube") for d in (3, 5, 25)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="folder for the .npz files (required unless --quick)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--quick", action="store_true", help="smoke run: 2 tasks, n=200, temp folder")
    args = p.parse_args()
    if not (args.out or args.quick):
        p.error("--out is required")
    import bmi

    print("command : python " + " ".join(sys.argv))
    print(f"versions: bmi {getattr(bmi, '__version__', '?')}, numpy {np.__version__}\n")
    if args.quick:
        args.n, args.out = 200, args.out or tempfile.mkdtemp(prefix="bmi-quick-")
    os.makedirs(args.out, exist_ok=True)
    for name in TASKS[:2] if args.quick else TASKS:
        task = bmi.benchmark.BENCHMARK_TASKS[name]
        X, Y = task.sample(args.n, seed=0)
        X, Y = np.asarray(X), np.asarray(Y)
        t = time.time()
        ksg = bmi.estimators.KSGEnsembleFirstEstimator(neighborhoods=(5,)).estimate(X, Y)
        cca = bmi.estimators.CCAMutualInformationEstimator().estimate(X, Y)
        np.savez(os.path.join(args.out, name + ".npz"), X=X, Y=Y, mi_true=task.mutual_information,
                 ksg=ksg, cca=cca)
        print(f"{name}: true {task.mutual_information:.3f} KSG {ksg:.3f} CCA {cca:.3f} "
              f"({time.time() - t:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
