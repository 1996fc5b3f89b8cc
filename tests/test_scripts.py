"""The MNIST example and benchmark run end to end (tiny settings, offline data)."""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-train", "120", "--epochs", "1", "--conv-channels", "4", "8", "--threads", "1"]


@pytest.fixture(autouse=True)
def offline_mnist():
    from skinfomax import load_mnist

    try:
        load_mnist(1)
    except ImportError:
        pytest.skip("no offline MNIST installed")


def run(script, args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / script), run_name="__main__")


def test_mnist_example_saves_the_five_figures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    run("examples/images_mnist.py", ["--out", str(tmp_path), *TINY], monkeypatch)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "1_c_traversal.png", "2_c_only.png", "3_z_only.png", "4_reconstructed.png",
        "5_original.png", "6_history.png", "c_by_digit.txt",
    ]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    assert "digit 9: mean c" in capsys.readouterr().out


def test_benchmark_prints_the_table(monkeypatch, capsys):
    run("benchmarks/images_mnist.py", ["--n-test", "60", *TINY], monkeypatch)
    out = capsys.readouterr().out
    assert out.startswith("command: PYTHONPATH=. python ") and "--n-train 120" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| PCA (10 components)", "| InfoMax VAE, MLP (256-128)", "| InfoMax VAE, conv (4-8)",
    ]
