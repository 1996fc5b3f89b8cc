"""Benchmark: PCA vs MLP vs conv InfoMax VAE on held-out MNIST digits.

All three get 10 codes (the VAEs: 9 z codes plus 1 c code). Reports, on
held-out digits, the reconstruction error (mean squared error per pixel of
the posterior-mean reconstruction, pixels in [0, 1]) and the accuracy of a
linear probe (standardised codes -> logistic regression) trained on the
training codes. Offline: the digits come from ``skinfomax.load_mnist``.

    PYTHONPATH=. python benchmarks/studies/images_mnist.py --n-train 10000 --epochs 10
"""

import os
import sys

import numpy as np
from sklearn.decomposition import PCA

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, md_head, md_row, parse_args, probes, timed
from skinfomax import InfoMaxVAETransformer, load_mnist


def main():
    args = parse_args(__doc__, dict(n_train=120, n_test=60, epochs=1, conv_channels=[4, 8]),
                      n_train=10000, n_test=2000, epochs=10, conv_channels=[32, 64, 128],
                      seed=(0, "data shuffle, split and initialisation"))
    X, y = load_mnist(args.n_train + args.n_test, random_state=args.seed)
    X_train, X_test = X[: args.n_train], X[args.n_train :]
    y_train, y_test = y[: args.n_train], y[args.n_train :]
    common = dict(n_components=9, n_info_components=1, likelihood="bernoulli",
                  max_iter=args.epochs, n_threads=1, device="cpu", random_state=args.seed)
    models = {
        "PCA (10 components)": PCA(n_components=10, random_state=args.seed),
        "InfoMax VAE, MLP (256-128)": InfoMaxVAETransformer(**common),
        "InfoMax VAE, conv ({})".format("-".join(map(str, args.conv_channels))):
            InfoMaxVAETransformer(architecture="conv", image_shape=(1, 28, 28),
                                  conv_channels=tuple(args.conv_channels), **common),
    }
    header(f"data    : {len(X_train)} training / {len(X_test)} held-out MNIST digits, "
           f"10 codes (9 z + 1 c for the VAEs), {args.epochs} epochs, alpha=1, Bernoulli "
           "likelihood", threads=1)
    md_head("model", "held-out reconstruction MSE", "linear-probe accuracy", "fit time (s)")
    for name, model in models.items():
        seconds = timed(lambda: model.fit(X_train))[0]
        Z_test = model.transform(X_test)
        error = np.mean((X_test - model.inverse_transform(Z_test)) ** 2)
        accuracy = probes(model.transform(X_train), y_train, Z_test, y_test)["probe"]
        md_row(name, f"{error:.4f}", f"{accuracy:.3f}", f"{seconds:.1f}")


if __name__ == "__main__":
    main()
