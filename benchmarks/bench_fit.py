"""InfoMaxVAETransformer.fit against hand-written PyTorch loops, interleaved.

One process, the same data and threads; the contenders run in turn
(A B C A B C ...) so that load from other processes hits all of them alike.
Reports median samples/second of each, ratios to the hand-written loops, and
the share of this CPU's matmul throughput (at the model's exact shapes,
see roofline.py) that each one reaches.

    PYTHONPATH=. python benchmarks/bench_fit.py --n-samples 5000 --repeats 5
    PYTHONPATH=. python benchmarks/bench_fit.py --variants estimator,compiled,tight
    PYTHONPATH=. python benchmarks/bench_fit.py --variants estimator,unchecked

"unchecked" is the estimator with the engine's divergence check switched off
(no per-epoch weight probe, no checkpoint at the start of fit): its ratio to
"estimator" is the cost of the check.
"""

import argparse
import contextlib
import os
import sys
import warnings
from unittest import mock

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

import handwritten  # noqa: E402
import roofline  # noqa: E402
from _common import MODEL, header, load_data, median, timed  # noqa: E402
from skinfomax import InfoMaxVAETransformer  # noqa: E402
from skinfomax._training import Engine  # noqa: E402


@contextlib.contextmanager
def divergence_check_off():
    """The engine's divergence check replaced by no-ops (the reference for its cost)."""
    no_probe = lambda self: torch.zeros((), device=self.device)  # noqa: E731
    no_checkpoint = lambda self: {"n_epochs": len(self.history)}  # noqa: E731
    with mock.patch.object(Engine, "_weight_sum", no_probe), \
            mock.patch.object(Engine, "_checkpoint", no_checkpoint):
        yield


def estimator_runner(context=contextlib.nullcontext, **params):
    def run(X, epochs):
        est = InfoMaxVAETransformer(max_iter=epochs, device="cpu", random_state=0,
                                    **{**MODEL, **params})
        with warnings.catch_warnings(), context():
            warnings.simplefilter("ignore", UserWarning)
            return est.fit(X)
    return run


CONTENDERS = {
    "estimator": estimator_runner(),
    "compiled": estimator_runner(compile=True),
    "bf16": estimator_runner(precision="bfloat16"),
    "unchecked": estimator_runner(divergence_check_off),
    "tight": handwritten.train_tight,
    "typical": handwritten.train_typical,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="estimator,tight,typical")
    args = parser.parse_args()
    header(threads=args.threads)
    X = load_data(args.n_samples)
    names = args.variants.split(",")
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {sorted(CONTENDERS)}")

    # Warm-up: first-call costs (allocator, lazy init, compile caches) out of the timings.
    for name in names:
        CONTENDERS[name](X[:1024], 1)
    calls = roofline.record_step(roofline.engine_step(128))
    flops_per_sample = sum(roofline.matmul_flops(f, s) for f, s in calls) / 128
    ceilings = [roofline.roofline(calls)[2]]

    times = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names:
            seconds, _ = timed(lambda: CONTENDERS[name](X, args.epochs))
            times[name].append(seconds)
        print(f"round {r + 1}: " + "  ".join(f"{n} {times[n][-1]:.2f}s" for n in names),
              f"| load {os.getloadavg()[0]:.2f}", flush=True)
    ceilings.append(roofline.roofline(calls)[2])
    ceiling = max(ceilings)

    n = args.n_samples * args.epochs
    rate = {name: n / median(t) for name, t in times.items()}
    best = {name: n / min(t) for name, t in times.items()}
    print(f"\n{args.n_samples} samples x {args.epochs} epochs, batch 128, {args.threads} threads; "
          f"matmul ceiling at the model's shapes {ceiling:.0f} GFLOP/s "
          f"(engine step {flops_per_sample / 1e6:.2f} MFLOP/sample)")
    print(f"{'variant':16s} {'median s':>9s} {'samples/s':>10s} {'best':>9s} "
          f"{'GFLOP/s':>8s} {'of ceiling':>10s}")
    for name in names:
        gflops = rate[name] * flops_per_sample / 1e9
        print(f"{name:16s} {median(times[name]):9.2f} {rate[name]:10,.0f} {best[name]:9,.0f} "
              f"{gflops:8.1f} {gflops / ceiling:10.1%}")
    if "unchecked" in rate and "estimator" in rate:
        print(f"divergence check: estimator / unchecked time "
              f"{rate['unchecked'] / rate['estimator']:.3f}x "
              f"(best-of: {best['unchecked'] / best['estimator']:.3f}x)")
    for ref in ("tight", "typical"):
        if ref in rate:
            for name in names:
                if name != ref and not name.startswith("tight") and name != "typical":
                    print(f"ratio {name} / {ref}: {rate[name] / rate[ref]:.2f}x "
                          f"(best-of: {best[name] / best[ref]:.2f}x)")
    print("note: GFLOP/s counts the engine's matmul FLOPs for every variant (the hand loops "
          "do ~20% more: their critic re-embeds x for the shuffled pairs)")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
