"""Training throughput on a GPU at batch 128, 1024 and 4096.

Data is moved to the device once (the estimator does that for in-memory X),
Adam is fused on CUDA, and the precision and compile settings are swept.
Each configuration is fitted once to warm up (CUDA context, kernels,
compile), then timed over ``--epochs`` epochs; samples/s is the median of
``--repeats`` fits. Needs a CUDA device unless ``--device cpu`` (smoke test).

    PYTHONPATH=. python benchmarks/bench_gpu.py --n-samples 70000 --epochs 20
    PYTHONPATH=. python benchmarks/bench_gpu.py --device cpu --n-samples 2048 --epochs 1 \\
        --batch-sizes 128 --repeats 1            # smoke test without a GPU
"""

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

from _common import MODEL, header, load_data, median, timed  # noqa: E402
from skinfomax import InfoMaxVAETransformer  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-samples", type=int, default=70000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="128,1024,4096")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--compile", default="off,on")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("No CUDA device here; run with --device cpu for a smoke test.")
    name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else "CPU")
    header(f"device  : {args.device} ({name})")
    X = load_data(args.n_samples)
    print(f"{'batch':>6s} {'precision':9s} {'compile':7s} {'samples/s':>12s}")
    for batch_size in map(int, args.batch_sizes.split(",")):
        for precision in args.precisions.split(","):
            for compiled in args.compile.split(","):
                params = {**MODEL, "batch_size": batch_size, "precision": precision,
                          "compile": compiled == "on", "device": args.device}
                est = InfoMaxVAETransformer(max_iter=args.epochs, random_state=0, **params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    InfoMaxVAETransformer(max_iter=1, random_state=0, **params).fit(X)  # warm-up
                    times = [timed(lambda: est.fit(X))[0] for _ in range(args.repeats)]
                rate = args.n_samples * args.epochs / median(times)
                print(f"{batch_size:6d} {precision:9s} {compiled:7s} {rate:12,.0f}", flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
