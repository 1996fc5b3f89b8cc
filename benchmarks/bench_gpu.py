"""Training throughput on a GPU at batch 128, 1024 and 4096.

Data is moved to the device once (the estimator does that for in-memory X),
Adam is fused on CUDA, and the precision, CUDA-graph and compile settings are
swept. "graphs off" is the engine's eager step (the estimator uses graphs by
default on CUDA); the hand-written tight loop of ``handwritten.py`` on the same
device is the reference. Each configuration is fitted once to warm up (CUDA
context, kernels, compile), then timed; samples/s is the median of
``--repeats`` fits, reported for the whole fit and for the steady state
(see ``rates``). Needs a CUDA device unless ``--device cpu``.

    PYTHONPATH=. python benchmarks/bench_gpu.py --n-samples 70000 --epochs 5
    PYTHONPATH=. python benchmarks/bench_gpu.py --device cpu --n-samples 2048 --epochs 1 \\
        --batch-sizes 128 --repeats 1 --graphs off   # smoke test without a GPU
"""

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

import handwritten  # noqa: E402
from _common import MODEL, header, load_data, median, timed  # noqa: E402
from skinfomax import InfoMaxVAETransformer  # noqa: E402
from skinfomax._training import Engine  # noqa: E402


def fit_time(device, function):
    """Seconds of ``function()`` with the device's queued work finished."""
    def run():
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    return timed(run)[0]


def rates(device, fit, n_samples, epochs, repeats):
    """Whole-fit and steady-state samples/s of ``fit(n_epochs)``.

    Whole fit: all of fit(1 + epochs), start-up included (validation, data
    transfer, network construction, warm-up steps and graph capture). Steady
    state: the ``epochs`` extra epochs alone, from fit(1 + epochs) - fit(1).
    """
    short = median([fit_time(device, lambda: fit(1)) for _ in range(repeats)])
    long = median([fit_time(device, lambda: fit(1 + epochs)) for _ in range(repeats)])
    return n_samples * (1 + epochs) / long, n_samples * epochs / (long - short)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-samples", type=int, default=70000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-sizes", default="128,1024,4096")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--graphs", default="on,off")
    parser.add_argument("--compile", default="off")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("No CUDA device here; run with --device cpu for a smoke test.")
    name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else "CPU")
    header(f"device  : {args.device} ({name})")
    X = load_data(args.n_samples)
    use_graphs = Engine._use_graphs
    print(f"{'batch':>6s} {'precision':9s} {'graphs':6s} {'compile':7s} "
          f"{'whole fit/s':>12s} {'steady/s':>12s} {'vs hand':>8s}")

    def row(batch_size, label, fit, reference=None):
        whole, steady = rates(args.device, fit, args.n_samples, args.epochs, args.repeats)
        ratio = 1.0 if reference is None else steady / reference
        print(f"{batch_size:6d} {label:24s} {whole:12,.0f} {steady:12,.0f} {ratio:8.2f}",
              flush=True)
        return steady

    for batch_size in map(int, args.batch_sizes.split(",")):
        def hand(epochs):
            handwritten.train_tight(X, epochs, batch_size, device=args.device)

        hand(1)  # warm-up
        reference = row(batch_size, "float32   hand-written", hand)
        for precision in args.precisions.split(","):
            for graphs in args.graphs.split(","):
                Engine._use_graphs = use_graphs if graphs == "on" else (lambda self: False)
                for compiled in args.compile.split(","):
                    params = {**MODEL, "batch_size": batch_size, "precision": precision,
                              "compile": compiled == "on", "device": args.device}

                    def fit(epochs):
                        InfoMaxVAETransformer(max_iter=epochs, random_state=0, **params).fit(X)

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        fit(1)  # warm-up: CUDA context, kernels, compile caches
                        row(batch_size, f"{precision:9s} {graphs:6s} {compiled:7s}", fit,
                            reference)
    Engine._use_graphs = use_graphs
    print("vs hand: steady-state samples/s over the hand-written tight loop's, same batch size")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
