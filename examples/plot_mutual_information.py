"""
Mutual information on a channel with a known answer
===================================================

:func:`~skinfomax.mutual_information` estimates I(X; Z) in nats from paired
samples with a trained critic. Here Z is X seen through a Gaussian channel,
``Z = rho * X + sqrt(1 - rho**2) * noise`` per coordinate with X and the noise
standard normal, so the truth is known in closed form:
``I = -d/2 * log(1 - rho**2)`` for d independent coordinates.

The estimate is a held-out *lower* bound, with a standard error. Settings are
small (one critic width, 2 folds, short training) so that the example runs in
the documentation build; the defaults are slower and tighter (:doc:`/science`).
"""

import matplotlib.pyplot as plt
import numpy as np

from skinfomax import mutual_information

d, n = 2, 2000
rng = np.random.default_rng(0)
rhos = [0.0, 0.5, 0.8, 0.95]
truth, estimates, errors = [], [], []
for rho in rhos:
    X = rng.standard_normal((n, d))
    Z = rho * X + np.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    result = mutual_information(
        X,
        Z,
        estimator="nwj",
        n_folds=2,
        critic_hidden_layer_sizes=(64, 64),
        n_critics=1,
        max_iter=60,
        n_threads=1,
        random_state=0,
    )
    truth.append(-d / 2 * np.log(1 - rho**2))
    estimates.append(result.mi)
    errors.append(result.se)
    print(
        f"rho={rho:<5} true {truth[-1]:.3f} nats, "
        f"estimate {result.mi:.3f} +/- {result.se:.3f}"
    )

# %%
fig, ax = plt.subplots(figsize=(5, 4))
ax.plot(truth, truth, color="grey", linestyle="--", label="truth")
ax.errorbar(
    truth,
    estimates,
    yerr=2 * np.asarray(errors),
    fmt="o",
    label="estimate +/- 2 SE",
)
ax.set_xlabel("true I(X; Z), nats")
ax.set_ylabel("estimated I(X; Z), nats")
ax.legend()
plt.show()
