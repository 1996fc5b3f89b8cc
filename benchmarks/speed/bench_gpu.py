"""Training throughput on a GPU at batch 128, 1024 and 4096.

Precision and CUDA graphs are swept ("graphs off" passes the built-in networks
as custom ones, which train eagerly), against the hand-written tight loop of
``handwritten.py`` on the same device. Each configuration is fitted once to
warm up (CUDA context, kernels), then samples/s is the median
of ``--repeats`` fits, whole fit and steady state (``rates``). Needs a CUDA
device unless ``--device cpu``.

    PYTHONPATH=. python benchmarks/speed/bench_gpu.py --n-samples 70000 --epochs 5
    PYTHONPATH=. python benchmarks/speed/bench_gpu.py --quick   # smoke run, on CPU without a GPU
"""

import itertools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
import handwritten
from _common import MODEL, header, load_after, load_data, median, numbers, parse_args, quiet, timed
from skinfomax import InfoMaxVAETransformer, build_mlp_networks


def eager_networks():
    """The built-in MLP networks passed as custom factories: trained without CUDA graphs."""
    def factory(part):
        return lambda shape, n_z, n_c: build_mlp_networks(
            shape[0], n_z, n_c, MODEL["hidden_layer_sizes"],
            MODEL["critic_hidden_layer_sizes"])[part]

    return dict(encoder=factory(0), decoder=factory(1), critic=factory(2))


def rates(device, fit, n_samples, epochs, repeats):
    """Whole-fit and steady-state samples/s of ``fit(n_epochs)``, queued device work finished:
    all of fit(1 + epochs), start-up included (validation, data transfer, networks, warm-up
    steps, graph capture), and the ``epochs`` extra epochs alone, fit(1 + epochs) - fit(1)."""
    def seconds(n_epochs):
        def run():
            fit(n_epochs)
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)

        return median([timed(run)[0] for _ in range(repeats)])

    short, long = seconds(1), seconds(1 + epochs)
    return n_samples * (1 + epochs) / long, n_samples * epochs / (long - short)


def main():
    args = parse_args(__doc__, dict(
        device="cuda" if torch.cuda.is_available() else "cpu", n_samples=512, epochs=1,
        repeats=1, batch_sizes="128", precisions="float32"),
        device="cuda", n_samples=70000, epochs=5, repeats=2, batch_sizes="128,1024,4096",
        precisions="float32,bfloat16", graphs="on,off")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("No CUDA device here; run with --device cpu (or --quick) for a smoke test.")
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    header(f"device  : {args.device} ({device})", threads=1 if args.quick else None)
    X = load_data(args.n_samples)
    print(f"{'batch':>6s} {'precision':9s} {'graphs':12s} {'whole fit/s':>12s} {'steady/s':>12s} "
          f"{'vs hand':>8s}")

    def row(batch_size, label, fit, reference=None):
        whole, steady = rates(args.device, fit, args.n_samples, args.epochs, args.repeats)
        ratio = 1.0 if reference is None else steady / reference
        print(f"{batch_size:6d} {label:22s} {whole:12,.0f} {steady:12,.0f} {ratio:8.2f}",
              flush=True)
        return steady

    for batch_size in numbers(args.batch_sizes):
        def hand(epochs):
            handwritten.train_tight(X, epochs, batch_size, device=args.device)

        hand(1)  # warm-up
        reference = row(batch_size, "float32   hand-written", hand)
        for precision, graphs in itertools.product(args.precisions.split(","),
                                                   args.graphs.split(",")):
            params = {**MODEL, "batch_size": batch_size, "precision": precision,
                      "device": args.device, **(eager_networks() if graphs == "off" else {})}

            def fit(epochs):
                InfoMaxVAETransformer(max_iter=epochs, random_state=0, **params).fit(X)

            with quiet():
                fit(1)  # warm-up: CUDA context, kernels
                row(batch_size, f"{precision:9s} {graphs:6s}", fit, reference)
    print("vs hand: steady-state samples/s over the hand-written tight loop's, same batch size")
    load_after()


if __name__ == "__main__":
    main()
