"""score / mi_bounds: the all-pairs held-out bound against one shifted pairing.

Fits the issue's MNIST setting (beta 4, alpha 10, 10 codes) once, then on the
same held-out digits and the same trained critic compares

- the old evaluation, one derangement shift per batch (re-implemented here
  as the reference), with
- the shipped one (``mi_bounds`` / ``score``: every mismatched pair within
  blocks of ``PAIR_BLOCK`` rows), and
- every mismatched pair of the whole batch (``pair_block`` = batch size),

by value, standard error over batches and time (median of repeats, in one
process, so the ratio is what counts)::

    PYTHONPATH=. python benchmarks/bench_score.py --n-train 5000 --n-test 4000
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))

from _common import MODEL, header, load_data, median, timed  # noqa: E402
from skinfomax import InfoMaxVAETransformer  # noqa: E402
from skinfomax.objectives import codes_from_noise, derangement_shift  # noqa: E402
from skinfomax.training import critic_bound, held_out_bound  # noqa: E402
from skinfomax.utils import generators, mean_and_se  # noqa: E402


@torch.no_grad()
def batches(vae, X, pair_block=None):
    """Per-batch bounds: one shifted pairing each (the evaluation before the change),
    or every mismatched pair within blocks of ``pair_block`` rows."""
    engine = vae._engine
    cpu_gen, noise_gen = generators(engine.seed, engine.device)
    X = torch.as_tensor(engine.inputs(X))  # the networks' (standard) units
    values = []
    for x in X.tensor_split(max(1, X.shape[0] // vae.batch_size_)):
        mean, log_var, c = engine.encoder(x)
        eps = torch.randn(mean.shape, generator=noise_gen)
        codes = codes_from_noise(mean, log_var, c, eps)
        # The old evaluation also ran the decoder for the reconstruction term.
        engine.likelihood.nll(x, engine.decoder(codes))
        if pair_block is None:
            shift = derangement_shift(x.shape[0], cpu_gen)
            bound = critic_bound(engine.critic, x, codes, vae.mi_estimator, shift)
        else:
            bound = held_out_bound(engine.critic, x, codes, vae.mi_estimator, pair_block)
        values.append(float(bound))
    return np.asarray(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    header(f"data    : MNIST {args.n_train} train / {args.n_test} held out; "
           f"beta 4, alpha 10, {args.epochs} epochs, batch {MODEL['batch_size']}",
           threads=args.threads)
    X = load_data(args.n_train + args.n_test)
    X_train, X_test = X[: args.n_train], X[args.n_train :]
    print("| seed | one shift: lower ± SE | mi_bounds (blocks of 16): lower ± SE | all pairs: "
          "lower ± SE | SE ratio blocks / all | time ratio blocks / all (vs one shift) |")
    print("|---|---|---|---|---|---|")
    for seed in map(int, args.seeds.split(",")):
        vae = InfoMaxVAETransformer(
            alpha=10.0, beta=4.0, max_iter=args.epochs, random_state=seed, device="cpu", **MODEL
        ).fit(X_train)
        times = {"shift": [], "blocks": [], "all": []}
        for _ in range(args.repeats):  # interleaved: load changes hit all alike
            t, old = timed(lambda: batches(vae, X_test))
            times["shift"].append(t)
            t, new = timed(lambda: vae.mi_bounds(X_test))
            times["blocks"].append(t)
            t, full = timed(lambda: batches(vae, X_test, pair_block=vae.batch_size_ * 2))
            times["all"].append(t)
        (old_mean, old_se), (full_mean, full_se) = mean_and_se(old), mean_and_se(full)
        ratio = {k: median(v) / median(times["shift"]) for k, v in times.items()}
        print(f"| {seed} | {old_mean:.3f} ± {old_se:.3f} | {new.lower:.3f} ± {new.lower_se:.3f} "
              f"| {full_mean:.3f} ± {full_se:.3f} | {new.lower_se / old_se:.2f} / "
              f"{full_se / old_se:.2f} | {ratio['blocks']:.2f} / {ratio['all']:.2f} |", flush=True)
    print("\nload after:", "%.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
