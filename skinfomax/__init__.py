"""skinfomax: InfoMax variational autoencoders as scikit-learn transformers. Everything public
is listed in ``__all__``; the underscored modules may change without notice.
"""

from ._critics import CriticCandidate
from ._datasets import load_mnist
from ._diagnostics import (active_units, diagnostics, elbo_scorer, mi_scorer, reconstruction_scorer)
from ._information import MIEstimate, mutual_information
from ._networks import Critic, Encoder, build_conv_networks, build_mlp_networks
from ._onnx import register_onnx_converter
from ._plotting import plot_history, plot_images, plot_reconstructions, plot_traversal
from ._training import TrainingDiverged
from ._transformer import InfoMaxVAETransformer, MIBounds
from ._version import __version__ as __version__


__all__ = [
    # the estimator
    "InfoMaxVAETransformer", "MIBounds", "TrainingDiverged",
    # mutual information of any paired samples
    "mutual_information", "MIEstimate", "CriticCandidate",
    # evaluating a fitted model
    "diagnostics", "active_units", "elbo_scorer", "mi_scorer", "reconstruction_scorer",
    # deployment
    "register_onnx_converter",
    # building blocks for custom networks
    "Critic", "Encoder", "build_mlp_networks", "build_conv_networks",
    # data and plots for examples
    "load_mnist", "plot_history", "plot_images", "plot_reconstructions", "plot_traversal",
]
