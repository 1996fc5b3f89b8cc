"""transform / inverse_transform throughput on 70,000 digits, against PCA.

Both models are fitted once (the VAE for one epoch: throughput does not
depend on the weights), then transform and inverse_transform are timed in
turn, interleaved, on all of X. Reports median rows/second.

    PYTHONPATH=. python benchmarks/speed/bench_transform.py --n-samples 70000 --repeats 5
"""

import os
import sys

from sklearn.decomposition import PCA

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import MODEL, header, interleave, load_after, load_data, median, parse_args
from skinfomax import InfoMaxVAETransformer


def main():
    args = parse_args(__doc__, dict(n_samples=1000, repeats=1, threads=1),
                      n_samples=70000, repeats=5, threads=2)
    header(threads=args.threads)
    X = load_data(args.n_samples)
    models = {name: InfoMaxVAETransformer(max_iter=1, device="cpu", random_state=0,
                                          precision=precision, **MODEL).fit(X[:5000])
              for name, precision in (("InfoMaxVAE", "float32"), ("InfoMaxVAE bf16", "bfloat16"))}
    models["PCA"] = PCA(n_components=MODEL["n_components"], random_state=0).fit(X)
    codes = {name: m.transform(X) for name, m in models.items()}  # also warms up
    runs = {}
    for name, m in models.items():
        runs[name, "transform"] = lambda m=m: m.transform(X)
        runs[name, "inverse_transform"] = lambda m=m, name=name: m.inverse_transform(codes[name])
    times = interleave({f"{name} {op}": run for (name, op), run in runs.items()}, args.repeats)
    print(f"\n{args.n_samples} x 784 float32, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':16s} {'op':18s} {'seconds':>8s} {'rows/s':>12s}")
    rates = {}
    for name, op in runs:
        seconds = median(times[f"{name} {op}"])
        rates[name, op] = args.n_samples / seconds
        print(f"{name:16s} {op:18s} {seconds:8.3f} {rates[name, op]:12,.0f}")
    for op in ("transform", "inverse_transform"):
        for name in ("InfoMaxVAE", "InfoMaxVAE bf16"):
            print(f"ratio {name} / PCA, {op}: {rates[name, op] / rates['PCA', op]:.2f}x")
    load_after()


if __name__ == "__main__":
    main()
