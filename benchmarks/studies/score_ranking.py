"""Does ``score`` rank encoders by their information? The held-out bound against the rate
(``mi_bounds().upper``, an upper bound on I(x; z)) over latent sizes, alpha and fit lengths.

``digits``: the user's grid of issue 30 (digits scaled to [0, 1], ``GridSearchCV`` with
``cv=3`` on the default ``score``, n_components 2/5/10/20, alpha 0/1) at ``--epochs`` (each a
fixed fit length: the stopping rule never acts on 1,200 rows); the mean test score and its
standard error over the folds, the rate on each fold's test part, the fits' mean seconds.
``mnist``: 50,000 fitted and 10,000 new MNIST digits (Bernoulli, every other parameter at its
default, so the stopping rule ends the fit), ``--latents`` x alpha 0/1: ``mi_bounds`` on the
new rows (lower = ``score``, with its standard error over batches), the epochs and the
seconds of ``fit`` (the scoring critic's training included)::

    PYTHONPATH=. python benchmarks/studies/score_ranking.py --datasets digits --epochs 30,100
    PYTHONPATH=. python benchmarks/studies/score_ranking.py --datasets mnist --latents 2,5,10,30
"""

import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_after, load_split, md_head, md_row, numbers, parse_args, quiet
from _common import timed
from skinfomax import InfoMaxVAETransformer


def digits_grid(epochs, latents, args):
    X = load_digits().data / 16.0
    cv = KFold(3, shuffle=True, random_state=0)

    def scoring(vae, X, y=None):  # one pass: mi_bounds' lower is score's value
        bounds = vae.mi_bounds(X)
        return {"score": bounds.lower, "rate": bounds.upper}

    search = GridSearchCV(InfoMaxVAETransformer(max_iter=epochs, n_threads=args.threads,
                                                random_state=0),
                          {"n_components": latents, "alpha": [0.0, 1.0]}, cv=cv,
                          scoring=scoring, refit=False)
    seconds = timed(lambda: search.fit(X))[0]
    results = search.cv_results_
    print(f"\ndigits, {epochs} epochs, cv=3 (grid search {seconds:.0f} s): mean test score "
          "(standard error over folds) and rate")
    md_head("alpha", "n_components", "score", "rate", "fit s")
    for i, params in enumerate(results["params"]):
        scores = [results[f"split{k}_test_score"][i] for k in range(3)]
        md_row(params["alpha"], params["n_components"],
               f"{np.mean(scores):.2f} ({np.std(scores, ddof=1) / np.sqrt(3):.2f})",
               f"{results['mean_test_rate'][i]:.1f}",
               f"{results['mean_fit_time'][i]:.2f}")


def mnist_sizes(latents, args):
    X, X_new, _, _ = load_split("mnist50k", None)
    print("\nMNIST 50,000 fitted / 10,000 new, defaults: score (standard error over batches), "
          "rate, epochs, fit seconds")
    md_head("alpha", "n_components", "score", "rate", "epochs", "fit s")
    for alpha in (0.0, 1.0):
        for d in latents:
            vae = InfoMaxVAETransformer(d, alpha=alpha, likelihood="bernoulli",
                                        n_threads=args.threads, random_state=0)
            seconds = timed(lambda: vae.fit(X))[0]
            b = vae.mi_bounds(X_new)
            md_row(alpha, d, f"{b.lower:.2f} ({b.lower_se:.2f})", f"{b.upper:.1f}", vae.n_iter_,
                   f"{seconds:.0f}")


def main():
    args = parse_args(__doc__, dict(datasets="digits", epochs="1", n_digits_latents="2,3"),
                      datasets="digits,mnist", epochs="30,100", latents="2,5,10,30",
                      n_digits_latents="2,5,10,20", threads=2)
    header(threads=args.threads)
    with quiet():
        for name in args.datasets.split(","):
            if name == "digits":
                for epochs in numbers(args.epochs):
                    digits_grid(epochs, numbers(args.n_digits_latents), args)
            elif name == "mnist":
                mnist_sizes(numbers(args.latents), args)
    load_after()


if __name__ == "__main__":
    main()
