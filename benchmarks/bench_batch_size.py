"""fit's time on MNIST at two batch sizes, alpha 0 and 1, interleaved.

The fits (alpha 0 and 1 at each ``--batch-sizes``) run in turn, round after
round, in one process: the machine's drift spreads over all of them. Data: the
first ``--n-train`` digits of ``skinfomax.load_mnist`` (Bernoulli likelihood,
default networks, 10 components, ``--epochs`` epochs, score's critic
included). Prints each round, the median and best time of each fit, and the
ratios of medians. What the batch size does to the codes after 30 epochs:
``compare_umap.py --batch-sizes 128 256``.

    PYTHONPATH=. python benchmarks/bench_batch_size.py --epochs 5 --rounds 5 --threads 2
"""

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, load_after, median, parse_args, timed

from skinfomax import InfoMaxVAETransformer, load_mnist


def main():
    args = parse_args(__doc__, {"n_train": 2000, "epochs": 1, "rounds": 2},
                      n_train=50_000, epochs=5, rounds=5, threads=2, components=10,
                      batch_sizes=[256, 128])
    header(threads=args.threads)
    X, _ = load_mnist(args.n_train, random_state=0)
    fits = {
        (alpha, batch_size): InfoMaxVAETransformer(
            args.components, alpha=alpha, likelihood="bernoulli", batch_size=batch_size,
            max_iter=args.epochs, n_threads=args.threads, random_state=0)
        for alpha in (0.0, 1.0) for batch_size in args.batch_sizes
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        InfoMaxVAETransformer(max_iter=1, random_state=0).fit(X[:256])  # torch's set-up
    times = {key: [] for key in fits}
    for r in range(args.rounds):
        for key, model in fits.items():
            times[key].append(timed(lambda model=model: model.fit(X))[0])
        print(f"round {r + 1}: " + "  ".join(f"{times[k][-1]:.2f}s" for k in fits),
              f"| load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"\n{args.n_train} rows x {args.epochs} epochs, {args.components} components, "
          f"{args.threads} threads")
    print(f"{'alpha':>5s} {'batch':>6s} {'median s':>9s} {'best s':>7s}")
    for (alpha, batch_size), t in times.items():
        print(f"{alpha:5g} {batch_size:6d} {median(t):9.2f} {min(t):7.2f}")
    m = {key: median(t) for key, t in times.items()}
    first, *others = args.batch_sizes
    for alpha in (0.0, 1.0):
        for other in others:
            print(f"alpha={alpha:g}: batch {other} / batch {first} "
                  f"{m[alpha, other] / m[alpha, first]:.2f}x")
    for batch_size in args.batch_sizes:
        print(f"batch {batch_size}: alpha=1 / alpha=0 "
              f"{m[1.0, batch_size] / m[0.0, batch_size]:.2f}x")
    load_after()


if __name__ == "__main__":
    main()
