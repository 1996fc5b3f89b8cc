"""transform / inverse_transform throughput on 70,000 digits, against PCA.

Both models are fitted once (the VAE for one epoch: throughput does not
depend on the weights), then transform and inverse_transform are timed in
turn, interleaved, on all of X. Reports median rows/second.

    PYTHONPATH=. python benchmarks/bench_transform.py --n-samples 70000 --repeats 5
"""

from sklearn.decomposition import PCA

from _common import MODEL, header, load_after, load_data, median, parse_args, timed
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
    times = {(name, op): [] for name in models for op in ("transform", "inverse_transform")}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name, "transform"].append(timed(lambda: model.transform(X))[0])
            times[name, "inverse_transform"].append(
                timed(lambda: model.inverse_transform(codes[name]))[0])
    print(f"{args.n_samples} x 784 float32, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':16s} {'op':18s} {'seconds':>8s} {'rows/s':>12s}")
    rates = {}
    for (name, op), t in times.items():
        rates[name, op] = args.n_samples / median(t)
        print(f"{name:16s} {op:18s} {median(t):8.3f} {rates[name, op]:12,.0f}")
    for op in ("transform", "inverse_transform"):
        for name in ("InfoMaxVAE", "InfoMaxVAE bf16"):
            print(f"ratio {name} / PCA, {op}: {rates[name, op] / rates['PCA', op]:.2f}x")
    load_after()


if __name__ == "__main__":
    main()
