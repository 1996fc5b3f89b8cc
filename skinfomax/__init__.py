"""skinfomax: InfoMax variational autoencoders as scikit-learn transformers.

Everything public is imported here and listed in ``__all__``; the modules
whose names start with an underscore are the implementation and may change
without notice.
"""

from ._critics import CriticCandidate
from ._datasets import load_mnist
from ._diagnostics import (
    active_units,
    diagnostics,
    elbo_scorer,
    mi_scorer,
    reconstruction_scorer,
)
from ._information import MIEstimate, mutual_information
from ._networks import Critic, Encoder, build_conv_networks, build_mlp_networks
from ._plotting import plot_history, plot_images, plot_reconstructions, plot_traversal
from ._training import TrainingDiverged
from ._transformer import InfoMaxVAETransformer, MIBounds
from ._version import __version__

