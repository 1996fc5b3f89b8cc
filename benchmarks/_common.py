"""What the benchmarks share: options and --quick, the header, the model, data, timing,
tables and probes. Each script puts this folder first on ``sys.path``, so ``_common``
imports however the script is run (and before any other tree's ``benchmarks``)."""

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The MNIST MLP of the speed claims: encoder 784-512-256-(2x10), decoder mirrored,
# critic (784+10)-256-256-1, NWJ, batch 128, Gaussian likelihood, Adam.
MODEL = dict(n_components=10, hidden_layer_sizes=(512, 256), critic_hidden_layer_sizes=(256, 256),
             likelihood="gaussian", mi_estimator="nwj", batch_size=128, learning_rate=1e-3,
             critic_learning_rate=1e-3)


def parse_args(doc, quick, **options):
    """Options ``name=default`` or ``(default, help)``: the default's type is the option's,
    False makes a flag, a list takes several values (``[]``: strings). ``--quick`` makes
    ``quick`` the defaults; ``--worker ARGS`` is for the script's own subprocesses."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in options.items():
        default, help = default if isinstance(default, tuple) else (default, None)
        if default is False:
            kind = dict(action="store_true")
        elif isinstance(default, list):
            kind = dict(nargs="*" if not default else "+", default=default,
                        type=type(default[0]) if default else str)
        else:
            kind = dict(type=None if default is None else type(default), default=default)
        parser.add_argument("--" + name.replace("_", "-"), help=help, **kind)
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds: " + ", ".join(
        f"{k}={v}" for k, v in quick.items()))
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args()
    return args


def revision(path=ROOT):
    """The short git commit of the tree at ``path`` ("" outside git)."""
    return subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def cpu_model():
    lscpu = shutil.which("lscpu") and subprocess.run(["lscpu"], capture_output=True, text=True)
    names = [line.split(":", 1)[1].strip() for line in (lscpu.stdout if lscpu else "").splitlines()
             if line.startswith("Model name:")]
    return names[0] if names else platform.processor() or platform.machine()


def header(extra="", threads=None):
    """Print what produced the figures: command, checkout, machine, versions, threads, load.
    ``threads`` sets torch's intra-op threads first, so the header reports the setting."""
    if threads:
        torch.set_num_threads(threads)
    print("command :", "PYTHONPATH=. python " + " ".join(shlex.quote(a) for a in sys.argv))
    print("checkout:", revision() or "unknown")
    print("machine :", cpu_model(), f"({os.cpu_count()} logical CPUs)", platform.platform())
    print("python  :", platform.python_version(), "| torch", torch.__version__,
          "| numpy", np.__version__)
    print("threads :", torch.get_num_threads(), "torch intra-op")
    print("load    :", "%.2f %.2f %.2f (1/5/15 min)" % os.getloadavg())
    if extra:
        print(extra)
    print(flush=True)


def load_after():
    print("load after:", "%.2f %.2f %.2f" % os.getloadavg(), flush=True)


@contextlib.contextmanager
def quiet():
    """Warnings off (a benchmark's figures, not the library's advice, are the output)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


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

    return np.ascontiguousarray(load_mnist(n_samples)[0], dtype=np.float32)


def load_split(name, n_mnist, scaler=None):
    """(X_train, X_test, y_train, y_test): the stratified 70/30 split (seed 0) of MNIST
    (``n_mnist`` digits), digits, wine or breast_cancer in float64; ``scaler`` fitted on the
    train part. ``mnist50k``: 50,000 fitted and 10,000 new MNIST digits as loaded (as in
    compare_umap)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    from skinfomax import load_mnist

    if name == "mnist50k":
        X, y = load_mnist(60_000, random_state=0)
        return X[:50_000], X[50_000:], y[:50_000], y[50_000:]
    if name == "mnist":
        X, y = load_mnist(n_mnist, random_state=0)
        X = X.astype(np.float64)
    else:
        X, y = getattr(datasets, "load_" + name)(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    if scaler is not None:
        scaler = scaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    return X_tr, X_te, y_tr, y_te


def probes(Z, y, Z_new, y_new):
    """Accuracy on the new rows of a linear probe (logistic regression on codes standardised
    on ``Z``) and of 5-NN on raw (``knn5``) and standardised (``knn5_std``) codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(Z)
    S, S_new = scaler.transform(Z), scaler.transform(Z_new)
    return dict(probe=LogisticRegression(max_iter=5000).fit(S, y).score(S_new, y_new),
                knn5=KNeighborsClassifier(5).fit(Z, y).score(Z_new, y_new),
                knn5_std=KNeighborsClassifier(5).fit(S, y).score(S_new, y_new))


def timed(function):
    """Wall seconds and the result of ``function()``."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def mean_se(values):
    """The mean of ``values`` (over seeds) and its standard error (nan from one value)."""
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
    return float(values.mean()), float(se)


def median(values):
    return float(np.median(values))


def interleave(contenders, rounds):
    """``{name: [seconds per round]}`` of the ``contenders`` ({name: function}) run in
    turn, round after round (A B C A B C ...), so the machine's drift spreads over all."""
    times = {name: [] for name in contenders}
    for r in range(rounds):
        for name, function in contenders.items():
            times[name].append(timed(function)[0])
        print(f"round {r + 1}: " + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()),
              f"| load {os.getloadavg()[0]:.2f}", flush=True)
    return times


def md_row(*cells):
    print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def md_head(*names):
    md_row(*names)
    print("|" + "---|" * len(names))


def run_worker(script, *args, env=None):
    """Run ``script --worker ARGS`` in a fresh Python process; the JSON its last line prints."""
    out = subprocess.run([sys.executable, os.path.abspath(script), "--worker", *map(str, args)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{script} --worker {' '.join(map(str, args))} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
