"""ONNX export of :meth:`InfoMaxVAETransformer.transform` through skl2onnx: ``torch.onnx.export``
writes the encoder with what ``transform`` does around it, onnx's version converter brings it to
skl2onnx's opset, and ``add_onnx_graph`` splices it into the model being converted."""

import copy
import logging
import warnings

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._transformer import InfoMaxVAETransformer

_ALIAS = "SkinfomaxInfoMaxVAETransformer"


def register_onnx_converter():
    """Teach skl2onnx to convert :class:`~skinfomax.InfoMaxVAETransformer`, alone or in a
    Pipeline.

    After this call, ``skl2onnx.to_onnx`` converts a fitted transformer (and any pipeline that
    contains one) to an ONNX graph of its :meth:`~skinfomax.InfoMaxVAETransformer.transform`:
    the standardisation of X (``likelihood="gaussian"``) and the encoder's posterior means
    ``[z_mean, c]``, for any encoder, built-in or custom, that ``torch.onnx.export`` can
    export. Calling it again does nothing new. onnxruntime runs the graph without Python or
    torch: :doc:`/deployment`.

    Raises
    ------
    ImportError
        When skl2onnx or onnxscript is not installed (``pip install "skinfomax[onnx]"``).

    Notes
    -----
    The graph's input dtype is the one given to ``to_onnx`` (its ``X`` or ``initial_types``).
    As ``transform``, it standardises in float64, runs the encoder in float32 and returns the
    input's float type (float64 for integer input); its codes equal ``transform``'s to within
    float32 rounding (below 1e-5). Fitted with ``precision="bfloat16"`` or ``"float16"``,
    ``transform`` rounds to that precision and the graph does not (a UserWarning says so). A
    2-D input takes flat rows, a 4-D one ``(n, C, H, W)`` images (with ``image_shape``). NaN
    and infinite values are not rejected: they propagate to the codes.

    Conversion raises ``NotFittedError`` for an unfitted transformer, ValueError for an input
    shape the transformer does not take or a ``target_opset`` onnx cannot convert the graph
    to, and TypeError, naming the encoder and the exporter's reason, for an encoder torch
    cannot export (e.g. one whose ``forward`` branches in Python on its input's values).

    Examples
    --------
    >>> import pytest
    >>> onnxruntime = pytest.importorskip("onnxruntime")  # the onnx extra
    >>> _ = pytest.importorskip("onnxscript")
    >>> import numpy as np
    >>> from skl2onnx import to_onnx
    >>> from sklearn.datasets import load_digits
    >>> from skinfomax import InfoMaxVAETransformer, register_onnx_converter
    >>> X = load_digits().data[:100].astype(np.float32)
    >>> vae = InfoMaxVAETransformer(n_components=2, hidden_layer_sizes=(16,),
    ...                             critic_hidden_layer_sizes=(16,), max_iter=2,
    ...                             n_threads=1, random_state=0).fit(X)
    >>> register_onnx_converter()
    >>> model = to_onnx(vae, X[:1])
    >>> session = onnxruntime.InferenceSession(model.SerializeToString(),
    ...                                        providers=["CPUExecutionProvider"])
    >>> (codes,) = session.run(None, {session.get_inputs()[0].name: X})
    >>> bool(np.abs(codes - vae.transform(X)).max() < 1e-5)
    True
    """
    try:
        import onnxscript  # noqa: F401  (torch.onnx.export's, imported here to fail early)
        from skl2onnx import update_registered_converter
    except ImportError as exc:
        raise ImportError(f"ONNX export needs skl2onnx and onnxscript ({exc}); "
                          'install the onnx extra: pip install "skinfomax[onnx]".') from exc
    # overwrite=True: a second call replaces the registration with the same one.
    update_registered_converter(InfoMaxVAETransformer, _ALIAS, _shape_calculator, _converter,
                                overwrite=True)


class _Transform(nn.Module):
    """``transform`` of a tensor in the graph's input dtype: rows or images in, ``[z_mean, c]``
    out (float32 for float32 input, float64 otherwise)."""

    def __init__(self, encoder, units, out_dtype):
        super().__init__()
        self.encoder, self.out_dtype = encoder, out_dtype
        self.units = units is not None
        if self.units:
            self.register_buffer("center", torch.tensor(units.center, dtype=torch.float64))
            self.register_buffer("scale", torch.tensor(units.scale, dtype=torch.float64))

    def forward(self, x):
        x = x.flatten(1)  # images (n, C, H, W) to rows, channels first, as transform
        if self.units:  # as InputUnits.standardise: in float64, then float32
            x = (x.double() - self.center) / self.scale
        z_mean, _, c = self.encoder(x.float())
        return torch.cat([z_mean, c], dim=1).to(self.out_dtype)


def _exported_transform(vae, input_type, opset):
    """The ONNX model of ``transform`` for inputs of ``input_type``, at ``opset``."""
    import onnx
    from onnx.version_converter import convert_version

    dtype = onnx.helper.tensor_dtype_to_np_dtype(input_type.to_onnx_type().tensor_type.elem_type)
    image_shape, n_features = vae._engine.spec.image_shape, vae.n_features_in_
    # Two rows: torch.export would fix a batch dimension of size 0 or 1.
    example = np.zeros((2, *image_shape) if len(input_type.shape) == 4 else (2, n_features), dtype)
    out_dtype = torch.float32 if dtype == np.float32 else torch.float64
    # A CPU copy in eval mode (BatchNorm's running statistics): the fitted model is untouched.
    module = _Transform(copy.deepcopy(vae.encoder_).cpu(), vae._engine.units, out_dtype).eval()
    name = type(vae.encoder_).__qualname__
    # Silence the exporter's per-operator log lines and torch's FutureWarning on its own code.
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
            program = torch.onnx.export(module, (torch.from_numpy(example),), dynamo=True,
                                        verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:
        cause = exc.__cause__ or exc
        reason = (str(cause).strip().splitlines() or [""])[0].rstrip(".")
        raise TypeError(f"ONNX export cannot convert the encoder {name}: torch.onnx.export "
                        f"failed with {type(cause).__name__}: {reason}. Change its forward so "
                        "that torch.export can trace it (https://pytorch.org/docs/stable/"
                        "export.html), or run transform in Python.") from exc
    finally:
        logger.setLevel(level)
    model = program.model_proto
    if model.functions:  # add_onnx_graph copies the main graph only
        model = onnx.inliner.inline_local_functions(model)
    exported = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if exported == opset:
        return model
    try:
        return convert_version(model, opset)
    except Exception as exc:
        raise ValueError(f"torch.onnx.export wrote the encoder {name} at opset {exported}, which "
                         f"onnx's version converter cannot bring to the target opset {opset} "
                         f"({exc}); pass to_onnx a higher target_opset (at {exported}, none is "
                         "needed).") from exc


# -- skl2onnx hooks -------------------------------------------------------------------------
def _check_input_shape(vae, shape):
    n_features, image_shape = vae.n_features_in_, vae._engine.spec.image_shape
    known = [None if not isinstance(s, (int, np.integer)) else int(s) for s in shape[1:]]
    if len(shape) == 4:
        if image_shape is None:
            raise ValueError(f"The ONNX input has shape {tuple(shape)}: 4-D input (n, C, H, W) "
                             "needs a transformer fitted with image_shape=(C, H, W).")
        if any(k is not None and k != s for k, s in zip(known, image_shape)):
            raise ValueError(f"The ONNX input holds images of shape {tuple(shape[1:])}, but "
                             f"image_shape={image_shape}.")
    elif len(shape) == 2:
        if known[0] is not None and known[0] != n_features:
            raise ValueError(f"The ONNX input has {known[0]} features, but the transformer was "
                             f"fitted on {n_features}; pass to_onnx rows like the training X.")
    else:
        raise ValueError(f"The ONNX input has shape {tuple(shape)}; the transformer takes "
                         "2-D rows (n, n_features) or 4-D images (n, C, H, W).")


def _shape_calculator(operator):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    vae = operator.raw_operator
    check_is_fitted(vae)
    input_type = operator.inputs[0].type
    _check_input_shape(vae, input_type.shape)
    # As transform: float32 stays float32, anything else comes back as float64.
    output_type = FloatTensorType if isinstance(input_type, FloatTensorType) else DoubleTensorType
    n_rows = input_type.shape[0] if input_type.shape else None
    operator.outputs[0].type = output_type([n_rows, vae.n_components_out_])


def _converter(scope, operator, container):
    from skl2onnx.helpers.integration import add_onnx_graph

    vae = operator.raw_operator
    if vae.precision in ("bfloat16", "float16"):
        warnings.warn(f"The transformer was fitted with precision={vae.precision!r}: its "
                      "transform rounds the encoder's matrix work to that precision, the ONNX "
                      "graph computes in float32, so their codes differ by that rounding.",
                      UserWarning, stacklevel=2)
    model = _exported_transform(vae, operator.inputs[0].type, container.target_opset_onnx)
    # Identity nodes join the operator's input and output to the graph's, renamed unique.
    add_onnx_graph(scope, operator, container, model)
