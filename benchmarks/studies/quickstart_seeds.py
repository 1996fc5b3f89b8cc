"""The quick start (``examples/quickstart.py``'s data, split and model) at several random
states and ``--precisions``, interleaved: fit seconds, held-out ``score`` and linear-probe
accuracy per fit, then the mean and standard error per precision::

    PYTHONPATH=. python benchmarks/studies/quickstart_seeds.py --seeds 0,1,2,3,4
"""

import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, numbers, parse_args, timed
from skinfomax import InfoMaxVAETransformer


def main():
    args = parse_args(__doc__, dict(seeds="0", epochs=5), seeds="0,1,2,3,4", epochs=300,
                      precisions=["float32", "auto"])
    header()
    X, y = load_digits(return_X_y=True)
    X, X_new, y, y_new = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = MinMaxScaler().fit(X)
    X, X_new = scaler.transform(X), scaler.transform(X_new)
    rows = {p: [] for p in args.precisions}
    for seed in numbers(args.seeds):
        for precision in args.precisions:  # interleaved: drift spreads over both
            vae = InfoMaxVAETransformer(n_components=10, max_iter=args.epochs,
                                        precision=precision, random_state=seed)
            seconds = timed(lambda: vae.fit(X))[0]
            probe = LogisticRegression(max_iter=5000).fit(vae.transform(X), y)
            rows[precision].append((seconds, vae.score(X_new),
                                    probe.score(vae.transform(X_new), y_new)))
            print(f"seed {seed} {precision:<8} {vae.n_iter_} epochs {seconds:6.1f} s  "
                  "score %.2f nats  probe %.3f" % rows[precision][-1][1:], flush=True)
    for precision, values in rows.items():
        values = np.array(values)
        se = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0 * values[0]
        print(f"{precision:<8} " + "  ".join(f"{name} {m:.3f} +- {s:.3f}" for name, m, s in
                                            zip(("seconds", "score", "probe"), values.mean(0), se)))


if __name__ == "__main__":
    main()
