"""skinfomax: InfoMax variational autoencoders as scikit-learn transformers."""

from .diagnostics import diagnostics
from .information import MIEstimate, mutual_information
from .scoring import elbo_scorer, mi_scorer, reconstruction_scorer
from .transformer import InfoMaxVAETransformer, MIBounds

__version__ = "0.1.0"

__all__ = [
    "InfoMaxVAETransformer",
    "diagnostics",
    "MIBounds",
    "MIEstimate",
    "mutual_information",
    "elbo_scorer",
    "mi_scorer",
    "reconstruction_scorer",
]
