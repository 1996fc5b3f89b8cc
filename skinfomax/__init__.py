"""skinfomax: InfoMax variational autoencoders as scikit-learn transformers."""

from .scoring import elbo_scorer, mi_scorer, reconstruction_scorer
from .transformer import InfoMaxVAETransformer

__version__ = "0.1.0"

__all__ = [
    "InfoMaxVAETransformer",
    "elbo_scorer",
    "mi_scorer",
    "reconstruction_scorer",
]
