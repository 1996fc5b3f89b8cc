"""One-call diagnostics of a fitted InfoMax VAE: active units, MI bounds, errors."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted

from ._transformer import InfoMaxVAETransformer

# The paper's definition: a unit is active when Var_x E[z_d | x] >= 0.05.
ACTIVE_UNIT_THRESHOLD = 0.05


def active_units(posterior_means: ArrayLike,
                 threshold: float = ACTIVE_UNIT_THRESHOLD) -> np.ndarray:
    """Boolean mask of the active latent units: those whose posterior mean varies over the
    data by ``Var_x E[z_d | x] >= threshold`` (0.05 in the InfoMax VAE paper, after Burda et al.).

    Parameters
    ----------
    posterior_means : array-like of shape (n_samples, n_components)
        Posterior means, e.g. the first ``n_components`` columns of ``transform(X)``.
    threshold : float, default=0.05

    Returns
    -------
    mask : ndarray of bool, shape (n_components,)

    Examples
    --------
    >>> import numpy as np
    >>> from skinfomax import active_units
    >>> means = np.column_stack([np.linspace(-1, 1, 100), np.full(100, 3.0)])
    >>> active_units(means)
    array([ True, False])
    """
    means = check_array(posterior_means, dtype=np.float64, ensure_min_samples=2,
                        input_name="posterior_means")
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold!r}.")
    return means.var(axis=0) >= threshold


def diagnostics(model, X: ArrayLike, y: ArrayLike | None = None, *,
                refit_critic: bool = False, cv: int = 5, n_neighbors: int = 5) -> dict:
    """Active units, MI bounds, reconstruction error, KL, trustworthiness, probe accuracy.

    Parameters
    ----------
    model : InfoMaxVAETransformer or Pipeline ending in one
        A fitted model; a pipeline's earlier steps transform X first.
    X : array-like of shape (n_samples, n_features)
        Data to diagnose, ideally held out from fitting; at least 2 samples.
    y : array-like of shape (n_samples,), default=None
        Class labels. When given, ``linear_probe_accuracy`` is the ``cv``-fold stratified
        cross-validated accuracy of a logistic regression on the standardised codes.
    refit_critic : bool, default=False
        Passed to :meth:`~skinfomax.InfoMaxVAETransformer.mi_bounds`.
    cv : int, default=5
        Folds of the linear probe.
    n_neighbors : int, default=5
        Neighbours of the trustworthiness (:func:`sklearn.manifold.trustworthiness`), less
        than half the samples; its cost is quadratic in them (about 2 GB at 10,000).

    Returns
    -------
    report : dict
        ``n_active_units`` (int), ``active_units`` (bool array over z),
        ``posterior_mean_variance`` (array over z), ``mi_lower``, ``mi_lower_se``,
        ``mi_upper``, ``mi_upper_se`` (nats, from
        :meth:`~skinfomax.InfoMaxVAETransformer.mi_bounds`), ``reconstruction_mse`` (of
        :meth:`~skinfomax.InfoMaxVAETransformer.reconstruct`), ``kl_per_dimension`` (array
        over z, nats; sums to ``mi_upper`` without info codes or ``refit_critic``),
        ``trustworthiness`` (in [0, 1]: 1 when the ``n_neighbors`` nearest neighbours of every
        code are those of its input, on X as the model takes it) and, with labels,
        ``linear_probe_accuracy``. ``pandas.Series(report)`` gives a table.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skinfomax import InfoMaxVAETransformer, diagnostics
    >>> X, y = load_digits(return_X_y=True)
    >>> vae = InfoMaxVAETransformer(n_components=3, max_iter=3, random_state=0).fit(X[:300] / 16)
    >>> report = diagnostics(vae, X[300:500] / 16, y[300:500])
    >>> sorted(report)[:3]
    ['active_units', 'kl_per_dimension', 'linear_probe_accuracy']
    >>> 0 <= report["n_active_units"] <= 3
    True
    """
    if not (isinstance(cv, int) and cv >= 2):
        raise ValueError(f"cv must be an integer >= 2, got {cv!r}.")
    vae, X = final_step(model, X)
    check_is_fitted(vae)
    codes = vae.transform(X)  # validates X
    X = np.asarray(X, dtype=np.float64)
    if not (isinstance(n_neighbors, Integral) and 1 <= n_neighbors < X.shape[0] / 2):
        raise ValueError(f"n_neighbors must be an integer from 1 to less than half the "
                         f"{X.shape[0]} samples, got {n_neighbors!r}.")
    if y is not None:
        y = np.asarray(y)
        check_consistent_length(X, y)
    bounds = vae.mi_bounds(X, refit_critic=refit_critic)
    kl = vae.kl_per_dimension(X)
    n_z = kl.shape[1]
    mask = active_units(codes[:, :n_z])
    report = {
        "n_active_units": int(mask.sum()),
        "active_units": mask,
        "posterior_mean_variance": codes[:, :n_z].var(axis=0),
        "mi_lower": bounds.lower,
        "mi_lower_se": bounds.lower_se,
        "mi_upper": bounds.upper,
        "mi_upper_se": bounds.upper_se,
        "reconstruction_mse": float(np.mean((X - vae.reconstruct(X)) ** 2)),
        "kl_per_dimension": kl.mean(axis=0),
        "trustworthiness": float(trustworthiness(X.reshape(len(X), -1), codes,
                                                 n_neighbors=n_neighbors)),
    }
    if y is not None:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=0)
        report["linear_probe_accuracy"] = float(cross_val_score(probe, codes, y, cv=folds).mean())
    return report


# -- scorers for GridSearchCV(scoring=...) ----------------------------------------
def final_step(model, X: ArrayLike) -> tuple:
    """The InfoMax VAE a model (or Pipeline) ends in, and X through the steps before it."""
    vae, Xt = (model[-1], model[:-1].transform(X)) if isinstance(model, Pipeline) else (model, X)
    if not isinstance(vae, InfoMaxVAETransformer):
        raise TypeError("Expected an InfoMaxVAETransformer or a Pipeline ending in one, "
                        f"got {type(vae).__name__}.")
    return vae, Xt


def mi_scorer(estimator, X: ArrayLike, y: None = None) -> float:
    """Held-out lower bound on I(x; z) in nats (the transformer's ``score``)."""
    vae, Xt = final_step(estimator, X)
    return vae.score(Xt)


def reconstruction_scorer(estimator, X: ArrayLike, y: None = None) -> float:
    """Negative mean squared error of ``inverse_transform(transform(X))``."""
    vae, Xt = final_step(estimator, X)
    Xt = np.asarray(Xt, dtype=float)
    return -float(np.mean((Xt - vae.inverse_transform(vae.transform(Xt))) ** 2))


def elbo_scorer(estimator, X: ArrayLike, y: None = None) -> float:
    """Mean evidence lower bound per sample in nats."""
    vae, Xt = final_step(estimator, X)
    return vae.elbo(Xt)
