"""Unit invariance: the same fit on X and on affine maps of X (issue 12).

Raw breast cancer plus a constant and an all-zero column, 400 / 169 split,
10 epochs; prints the held-out score and the largest code and score
differences against the fit on X::

    PYTHONPATH=. python benchmarks/units_invariance.py
"""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from skinfomax import InfoMaxVAETransformer
X, _ = load_breast_cancer(return_X_y=True)
X = np.column_stack([X, np.full(len(X), 7.0), np.zeros(len(X))])
Xtr, Xte = train_test_split(X, test_size=169, random_state=0)
rng = np.random.RandomState(0)
f = 10.0 ** rng.uniform(-8, 8, X.shape[1])
maps = {"x": lambda a: a, "1e6 x + 1e3": lambda a: a * 1e6 + 1e3, "x / 1e4": lambda a: a / 1e4,
        "per-feature 10^U(-8,8)": lambda a: a * f, "1e30 x + 5e30": lambda a: a * 1e30 + 5e30}
ref = None
for name, m in maps.items():
    v = InfoMaxVAETransformer(n_components=4, max_iter=10, random_state=0, n_threads=1).fit(m(Xtr))
    Z, s = v.transform(m(Xte)), v.score(m(Xte))
    if ref is None:
        ref = (Z, s); print(f"{name:24s} score {s:.4f}")
    else:
        print(f"{name:24s} score {s:.4f}  max|dZ| {np.abs(Z - ref[0]).max():.3g}  |dscore| {abs(s - ref[1]):.3g}")
