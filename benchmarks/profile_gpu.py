"""Where a training step's time goes on a GPU: torch.profiler over one epoch.

Prints the operators that cost the most host (CPU) time and device time, the
number of kernel launches per step, and the hand-written tight loop's rate on
the same device for reference.

    PYTHONPATH=. python benchmarks/profile_gpu.py --batch-size 1024
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import handwritten  # noqa: E402
from _common import MODEL, header, load_data  # noqa: E402
from skinfomax import InfoMaxVAETransformer  # noqa: E402


def rate(function, n_samples, epochs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    torch.cuda.synchronize()
    return n_samples * epochs / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20480)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    header(f"device  : cuda ({torch.cuda.get_device_name()})")
    X = load_data(args.n_samples)
    params = {**MODEL, "batch_size": args.batch_size, "device": "cuda", "compile": args.compile}
    InfoMaxVAETransformer(max_iter=1, random_state=0, **params).fit(X)  # warm-up
    handwritten.train_tight(X, 1, args.batch_size, device="cuda")
    est = InfoMaxVAETransformer(max_iter=args.epochs, random_state=0, **params)
    ours = rate(lambda: est.fit(X), args.n_samples, args.epochs)
    hand = rate(lambda: handwritten.train_tight(X, args.epochs, args.batch_size, device="cuda"),
                args.n_samples, args.epochs)
    print(f"samples/s: estimator {ours:,.0f}  hand-written tight loop {hand:,.0f}"
          f"  ratio {ours / hand:.2f}")
    est = InfoMaxVAETransformer(max_iter=1, random_state=0, **params)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        est.fit(X)
        torch.cuda.synchronize()
    n_steps = args.n_samples // args.batch_size
    events = prof.key_averages()
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                        "cudaLaunchKernelExC"))
    print(f"kernel launches per step: {launches / n_steps:.0f}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50))
    print(events.table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=50))


if __name__ == "__main__":
    main()
