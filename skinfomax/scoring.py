"""Scorers for ``GridSearchCV(scoring=...)``: greater is better for each.

Each takes ``(estimator, X, y=None)`` where ``estimator`` is a fitted
:class:`~skinfomax.InfoMaxVAETransformer` or a ``Pipeline`` ending in one; a
pipeline's earlier steps transform X first. Pass several as a dict for
multi-metric search::

    GridSearchCV(vae, grid, scoring={"mi": mi_scorer, "recon": reconstruction_scorer},
                 refit="recon")

The MI score rises with ``alpha`` and ``n_components`` by construction; to
choose those, score reconstruction, the ELBO, or a downstream classifier.
"""

import numpy as np
from numpy.typing import ArrayLike
from sklearn.pipeline import Pipeline

__all__ = ["elbo_scorer", "final_step", "mi_scorer", "reconstruction_scorer"]


def final_step(model, X: ArrayLike) -> tuple:
    """The InfoMax VAE a model ends in, and X passed through the steps before it.

    ``model`` is a fitted :class:`~skinfomax.InfoMaxVAETransformer` or a
    ``Pipeline`` ending in one; anything else raises TypeError.
    """
    from .transformer import InfoMaxVAETransformer  # the transformer imports this module's users

    vae, Xt = (model[-1], model[:-1].transform(X)) if isinstance(model, Pipeline) else (model, X)
    if not isinstance(vae, InfoMaxVAETransformer):
        raise TypeError(
            "Expected an InfoMaxVAETransformer or a Pipeline ending in one, "
            f"got {type(vae).__name__}."
        )
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
