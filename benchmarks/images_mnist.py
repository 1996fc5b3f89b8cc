"""Benchmark: PCA vs MLP vs conv InfoMax VAE on held-out MNIST digits.

All three get the same latent size (the VAEs: n_components z codes plus
n_info_components c codes; PCA: their sum). Reports, on held-out digits, the
reconstruction error (mean squared error per pixel of the posterior-mean
reconstruction, pixels in [0, 1]) and the accuracy of a linear probe
(standardised codes -> logistic regression) trained on the training codes.
Offline: the digits come from ``skinfomax.load_mnist``.

    PYTHONPATH=. python benchmarks/images_mnist.py --n-train 10000 --epochs 10
"""


import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _common import header, parse_args, timed
from skinfomax import InfoMaxVAETransformer, load_mnist


def main():
    args = parse_args(__doc__, dict(n_train=120, n_test=60, epochs=1, conv_channels=[4, 8]),
                      n_train=10000, n_test=2000, n_components=(9, "z codes"),
                      n_info_components=(1, "c codes"), epochs=10, conv_channels=[32, 64, 128],
                      alpha=1.0, threads=1, seed=0)
    X, y = load_mnist(args.n_train + args.n_test, random_state=args.seed)
    X_train, X_test = X[: args.n_train], X[args.n_train :]
    y_train, y_test = y[: args.n_train], y[args.n_train :]
    n_codes = args.n_components + args.n_info_components

    common = dict(n_components=args.n_components, n_info_components=args.n_info_components,
                  alpha=args.alpha, likelihood="bernoulli", max_iter=args.epochs,
                  n_threads=args.threads, device="cpu", random_state=args.seed)
    models = {
        f"PCA ({n_codes} components)": PCA(n_components=n_codes, random_state=args.seed),
        "InfoMax VAE, MLP (256-128)": InfoMaxVAETransformer(**common),
        "InfoMax VAE, conv ({})".format("-".join(map(str, args.conv_channels))):
            InfoMaxVAETransformer(architecture="conv", image_shape=(1, 28, 28),
                                  conv_channels=tuple(args.conv_channels), **common),
    }

    header(f"data    : {len(X_train)} training / {len(X_test)} held-out MNIST digits, "
           f"{n_codes} codes ({args.n_components} z + {args.n_info_components} c for the VAEs), "
           f"{args.epochs} epochs, alpha={args.alpha}, Bernoulli likelihood", threads=args.threads)
    print("| model | held-out reconstruction MSE | linear-probe accuracy | fit time (s) |")
    print("| --- | --- | --- | --- |")
    for name, model in models.items():
        seconds = timed(lambda: model.fit(X_train))[0]
        Z_train, Z_test = model.transform(X_train), model.transform(X_test)
        error = np.mean((X_test - model.inverse_transform(Z_test)) ** 2)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        accuracy = probe.fit(Z_train, y_train).score(Z_test, y_test)
        print(f"| {name} | {error:.4f} | {accuracy:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
