"""fit's time on MNIST at two batch sizes, alpha 0 and 1, interleaved.

The fits (alpha 0 and 1 at each ``--batch-sizes``) run in turn, round after
round, in one process: the machine's drift spreads over all of them. Data: the
first ``--n-train`` digits of ``skinfomax.load_mnist`` (Bernoulli likelihood,
default networks, 10 components, ``--epochs`` epochs, score's critic
included). Prints each round, the median and best time of each fit, and the
ratios of medians. What the batch size does to the codes after 30 epochs:
``studies/compare_umap.py --batch-sizes 128 256``.

    PYTHONPATH=. python benchmarks/speed/bench_batch_size.py --epochs 5 --rounds 5 --threads 2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, interleave, load_after, median, parse_args, quiet
from skinfomax import InfoMaxVAETransformer, load_mnist


def main():
    args = parse_args(__doc__, {"n_train": 2000, "epochs": 1, "rounds": 2},
                      n_train=50_000, epochs=5, rounds=5, threads=2, batch_sizes=[256, 128])
    header(threads=args.threads)
    X, _ = load_mnist(args.n_train, random_state=0)
    fits = {(alpha, batch_size): InfoMaxVAETransformer(
        10, alpha=alpha, likelihood="bernoulli", batch_size=batch_size, max_iter=args.epochs,
        n_threads=args.threads, random_state=0)
        for alpha in (0.0, 1.0) for batch_size in args.batch_sizes}
    with quiet():
        InfoMaxVAETransformer(max_iter=1, random_state=0).fit(X[:256])  # torch's set-up
    times = interleave({f"a{a:g} b{b}": lambda m=m: m.fit(X) for (a, b), m in fits.items()},
                       args.rounds)
    m = {(a, b): median(times[f"a{a:g} b{b}"]) for a, b in fits}
    print(f"\n{args.n_train} rows x {args.epochs} epochs, 10 components, {args.threads} threads")
    print(f"{'alpha':>5s} {'batch':>6s} {'median s':>9s} {'best s':>7s}")
    for a, b in fits:
        print(f"{a:5g} {b:6d} {m[a, b]:9.2f} {min(times[f'a{a:g} b{b}']):7.2f}")
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
