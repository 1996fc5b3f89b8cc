"""Why some linear-Gaussian cells stay short: the bound's own noise vs the critic's learning.

For a linear-Gaussian channel ``z = x + n`` (``x ~ N(0, I_d)``,
``n ~ N(0, s^2 I_d)``) the optimal NWJ critic is known in closed form,
``T*(x, z) = 1 + log p(z | x) - log p(z)``, and its bound equals I(x; z) in
expectation. Evaluated like ``mutual_information``'s held-out parts (fixed
batches of 256 rows, every mismatched pair of a batch a marginal draw), it
shows how close the bound itself can get on ``n`` samples: its mean and
standard error. Beside it, the default ``mutual_information`` call at ``n``
and at ``--more`` samples: if the trained critic's gap shrinks with more
samples while the oracle's bound is on the truth, the gap is the critic's
learning from finite samples, not the bound's variance::

    PYTHONPATH=. python benchmarks/oracle_critic.py --cells 1:5,20:0.5,20:5 --n 5000 --more 20000
"""

import argparse
import time

import numpy as np
import torch

from _common import header
from ground_truth import linear_gaussian


def oracle_nwj(x, z, noise_var, batch_size=256):
    """All-pairs NWJ of the optimal critic on fixed batches: (mean, SE) over batches."""
    d = x.shape[1]
    values = []
    for idx in np.array_split(np.arange(len(x)), len(x) // batch_size):
        xb, zb = x[idx], z[idx]
        # log p(z_j | x_i) - log p(z_j) for every pair (i, j), in float64.
        sq = ((zb[None, :, :] - xb[:, None, :]) ** 2).sum(-1)
        log_cond = -0.5 * sq / noise_var - 0.5 * d * np.log(2 * np.pi * noise_var)
        log_marg = (-0.5 * (zb ** 2).sum(-1) / (1 + noise_var)
                    - 0.5 * d * np.log(2 * np.pi * (1 + noise_var)))
        t = 1.0 + log_cond - log_marg[None, :]
        joint = np.diag(t)
        off = t[~np.eye(len(idx), dtype=bool)]
        values.append(joint.mean() - np.exp(off - 1.0).mean())
    values = np.asarray(values)
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="1:5,20:0.5,20:5", help="d:MI pairs")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--more", type=int, default=20000)
    args = p.parse_args()
    torch.set_num_threads(1)
    header()
    from skinfomax import mutual_information

    print("| d | true MI | oracle critic, n | default call, n | default call, more | s |")
    print("|---|---|---|---|---|---|")
    for cell in args.cells.split(","):
        d, mi = int(cell.split(":")[0]), float(cell.split(":")[1])
        noise_var = 1.0 / np.expm1(2.0 * mi / d)
        cells = []
        x, z = linear_gaussian(d, mi, args.n, seed=d)
        o, o_se = oracle_nwj(x, z, noise_var)
        cells.append(f"{o:.3f} ± {o_se:.3f} ({100 * (o - mi) / mi:+.1f}%)")
        start = time.time()
        for n in (args.n, args.more):
            x, z = linear_gaussian(d, mi, n, seed=d)
            r = mutual_information(x, z, random_state=0)
            cells.append(f"{r.mi:.3f} ± {r.se:.3f} ({100 * (r.mi - mi) / mi:+.1f}%)")
        print(f"| {d} | {mi:g} | " + " | ".join(cells) + f" | {time.time() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
