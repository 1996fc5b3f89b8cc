"""Export `benchmark-mi` tasks (samples, true MI, KSG, CCA) to .npz files, in bmi's venv.

Run inside the benchmark-mi virtual environment (never a skinfomax
dependency). Samples the chosen `bmi` tasks, runs that package's KSG and CCA estimators,
and writes one ``.npz`` per task (X, Y, true MI, KSG, CCA) for
``benchmarks/ground_truth.py --bmi-dir`` to read in skinfomax's environment::

    python3 -m venv /work/bmi-venv
    /work/bmi-venv/bin/pip install jax==0.4.30 jaxlib==0.4.30 numpy==1.26.4 benchmark-mi
    /work/bmi-venv/bin/python benchmarks/bmi_export.py --out /tmp/bmi-samples

``--quick`` exports two tasks of 200 samples to a temporary folder. Imports
nothing of skinfomax or of the other benchmarks: that venv has neither.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

TASKS = [
    "multinormal-dense-2-2-0.5", "multinormal-dense-3-3-0.5", "multinormal-dense-5-5-0.5",
    "multinormal-dense-25-25-0.5", "multinormal-sparse-2-2-2-2.0",
    "multinormal-sparse-3-3-2-2.0", "multinormal-sparse-5-5-2-2.0",
    "multinormal-sparse-25-25-2-2.0", "student-identity-1-1-1", "student-identity-2-2-1",
    "student-identity-3-3-2", "student-identity-5-5-2", "spiral-multinormal-sparse-3-3-2-2.0",
    "spiral-multinormal-sparse-5-5-2-2.0", "spiral-multinormal-sparse-25-25-2-2.0",
    "half_cube-multinormal-sparse-3-3-2-2.0", "half_cube-multinormal-sparse-5-5-2-2.0",
    "half_cube-multinormal-sparse-25-25-2-2.0",
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="folder for the .npz files (required unless --quick)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
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
        X, Y = task.sample(args.n, seed=args.seed)
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
