"""Quick start: InfoMax VAE on scikit-learn's digits, side by side with PCA.

Fits on 70% of the 1,797 bundled 8x8 digits and reports, on the held-out 30%:
the MI lower bound I(x; z), the reconstruction error, and the accuracy of a
linear probe (logistic regression) trained on the codes. Runs offline in under
half a minute on a 2-core CPU. The second line of the output names the machine
and its load before and after the fit, the third torch's build and the threads
the fit used.

    python examples/quickstart.py
"""

import os
import platform
import re
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from skinfomax import InfoMaxVAETransformer

N_COMPONENTS = 10


def cpu_model():
    """The CPU's model name (Linux), else what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    models = re.findall(r"model name\s*: (.*)", text)
    return models[0].strip() if models else platform.processor() or "CPU"


def load_average():
    """The 1-minute load average: other work that shared the cores."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def probe_accuracy(Z_train, y_train, Z_test, y_test):
    probe = LogisticRegression(max_iter=5000).fit(Z_train, y_train)
    return probe.score(Z_test, y_test)


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    # Pixels in [0, 1]: the reconstruction errors below are then per pixel in
    # [0, 1], and PCA, which depends on the scaling, sees what the VAE sees.
    # The VAE (Gaussian likelihood) standardises internally: no scaler needed.
    scaler = MinMaxScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    load_before = load_average()
    start = time.perf_counter()
    vae = InfoMaxVAETransformer(
        n_components=N_COMPONENTS,
        alpha=1.0,
        beta=1.0,
        max_iter=300,
        random_state=0,
    ).fit(X_train)
    seconds = time.perf_counter() - start
    load_after = load_average()
    pca = PCA(n_components=N_COMPONENTS, random_state=0).fit(X_train)

    rows = []
    for name, model in (("PCA", pca), ("InfoMax VAE", vae)):
        Z_train, Z_test = model.transform(X_train), model.transform(X_test)
        error = np.mean((X_test - model.inverse_transform(Z_test)) ** 2)
        accuracy = probe_accuracy(Z_train, y_train, Z_test, y_test)
        rows.append((name, error, accuracy))

    print(
        f"digits: {len(X_train)} train / {len(X_test)} test, "
        f"{N_COMPONENTS} components"
    )
    print(
        f"{cpu_model()}, {os.cpu_count()} cores, load average "
        f"{load_before:.2f} before the fit, {load_after:.2f} after"
    )
    threads = vae.n_threads_  # n_threads=None: the cores other processes left idle
    print(
        f"torch {torch.__version__}, {threads} thread{'s' if threads != 1 else ''}, "
        f"{platform.machine()}"
    )
    print(
        f"InfoMax VAE: {vae.n_iter_} epochs in {seconds:.1f} s "
        f"on {vae.device_}"
    )
    print(f"held-out MI lower bound I(x; z): {vae.score(X_test):.2f} nats")
    print(f"{'model':<12} {'recon MSE':>10} {'linear probe':>13}")
    for name, error, accuracy in rows:
        print(f"{name:<12} {error:>10.4f} {accuracy:>13.3f}")


if __name__ == "__main__":
    main()
