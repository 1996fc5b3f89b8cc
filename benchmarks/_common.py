"""Shared helpers of the benchmarks: header, model, data, timing, options and --quick."""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np
import torch

# The MNIST MLP of the performance claims: encoder 784-512-256-(2x10), decoder
# mirrored, critic (784+10)-256-256-1, NWJ, batch 128, Gaussian likelihood, Adam.
MODEL = dict(
    n_components=10,
    hidden_layer_sizes=(512, 256),
    critic_hidden_layer_sizes=(256, 256),
    likelihood="gaussian",
    mi_estimator="nwj",
    batch_size=128,
    learning_rate=1e-3,
    critic_learning_rate=1e-3,
)


def parse_args(parser, quick, **options):
    """Add ``options`` (name=default or (default, help); the default's type is the
    option's, False makes a flag, a list nargs="+") to ``parser`` (or to a new one that a
    docstring's first line describes), then parse; ``--quick`` makes the ``quick`` settings
    the defaults (flags given still win)."""
    if isinstance(parser, str):
        parser = argparse.ArgumentParser(description=parser.splitlines()[0])
    for name, default in options.items():
        default, help = default if isinstance(default, tuple) else (default, None)
        if default is False:
            kind = dict(action="store_true")
        elif isinstance(default, list):
            kind = dict(nargs="+", type=type(default[0]), default=default)
        else:
            kind = dict(type=None if default is None else type(default), default=default)
        parser.add_argument("--" + name.replace("_", "-"), help=help, **kind)
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds: " + ", ".join(
        f"{k}={v}" for k, v in quick.items()))
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args()
    return args


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def header(extra="", threads=None):
    """Print what produced the figures: command, machine, versions, threads, load.

    ``threads`` sets torch's intra-op threads first, so the header reports
    the setting the figures are taken with.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    print("command :", "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in sys.argv))
    print("machine :", cpu_model(), f"({os.cpu_count()} logical CPUs)", platform.platform())
    print("python  :", platform.python_version(), "| torch", torch.__version__,
          "| numpy", np.__version__)
    print("threads :", torch.get_num_threads(), "torch intra-op")
    print("load    :", "%.2f %.2f %.2f (1/5/15 min)" % os.getloadavg())
    if extra:
        print(extra)
    print(flush=True)


def load_after():
    print("load after:", "%.2f %.2f %.2f" % os.getloadavg())


def numbers(text, kind=int):
    """A comma-separated option's values: "2000,20000" -> [2000, 20000]."""
    return [kind(v) for v in text.split(",")]


def proc_status(*fields):
    """``fields`` of /proc/self/status (memory, kB there) in bytes."""
    with open("/proc/self/status") as status:
        pairs = (line.split(":", 1) for line in status)
        return {k: int(v.split()[0]) * 1024 for k, v in pairs if k in fields}


def load_data(n_samples):
    """``n_samples`` MNIST digits as float32 (``skinfomax.load_mnist``, offline)."""
    from skinfomax import load_mnist

    X, _ = load_mnist(n_samples)
    return np.ascontiguousarray(X, dtype=np.float32)


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def timed_cpu(function):
    """Wall seconds, CPU seconds of this process and the result of ``function()``."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - start, time.process_time() - cpu_start, result


def median(values):
    return float(np.median(values))


def run_worker(script, *args, env=None):
    """Run ``script --worker ARGS`` in a fresh Python process; the JSON its last line prints."""
    out = subprocess.run([sys.executable, os.path.abspath(script), "--worker", *map(str, args)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{script} --worker {' '.join(map(str, args))} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
