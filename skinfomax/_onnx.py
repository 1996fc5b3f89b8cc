"""ONNX export of :meth:`InfoMaxVAETransformer.transform` through skl2onnx.

The converter writes ONNX operators itself, one per built-in layer, rather than splicing
in a graph from ``torch.onnx.export``: that exporter's default (the dynamo one) needs
onnxscript and picks its own opset, which then has to agree with the opset skl2onnx targets
for the rest of a pipeline, while the encoders' few layer types (Linear, Conv2d, BatchNorm,
ReLU, reshapes) map one to one onto ONNX operators that exist in every opset. A layer it does
not know is refused by name, before any graph is written.
"""

import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._networks import Encoder, ImageView
from ._transformer import InfoMaxVAETransformer

_ALIAS = "SkinfomaxInfoMaxVAETransformer"
_INSTALL = 'pip install "skinfomax[onnx]"'

# Layers that are the identity in eval mode, the mode transform runs the encoder in.
_IDENTITY = (nn.Identity, nn.Dropout)
_ACTIVATIONS = {nn.ReLU: "Relu", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid"}
_SUPPORTED = ("nn.Sequential of nn.Linear, nn.Conv2d, nn.BatchNorm1d/2d, nn.Flatten, "
              "skinfomax's ImageView, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Sigmoid, "
              "nn.Dropout and nn.Identity")


def register_onnx_converter():
    """Teach skl2onnx to convert :class:`~skinfomax.InfoMaxVAETransformer`, alone or in a
    Pipeline.

    After this call, ``skl2onnx.to_onnx`` converts a fitted transformer (and any
    scikit-learn pipeline that contains one) to an ONNX graph of its
    :meth:`~skinfomax.InfoMaxVAETransformer.transform`: the standardisation of X
    (``likelihood="gaussian"``) and the encoder's posterior means ``[z_mean, c]``, for the
    "mlp" and "conv" architectures. Calling it again does nothing new. onnxruntime then runs
    the graph in any of its languages, without Python or torch: :doc:`/deployment`.

    Returns
    -------
    None

    Raises
    ------
    ImportError
        When skl2onnx is not installed (``pip install "skinfomax[onnx]"``).

    Notes
    -----
    The graph's input dtype is the one given to ``to_onnx`` (its ``X`` or
    ``initial_types``). As ``transform``, it standardises in float64, runs the encoder in
    float32 and returns the input's float type (float64 for integer input). Its codes equal
    ``transform``'s to within float32 rounding, not bit for bit: the tests hold the largest
    absolute difference below 1e-5. Fitted with ``precision="bfloat16"`` or ``"float16"``,
    ``transform`` rounds to that precision while the graph computes in float32, so they
    differ by that rounding (a UserWarning says so). A 2-D input takes flat rows; a 4-D one
    ``(n, C, H, W)`` images, with ``image_shape`` set. Unlike ``transform``, the graph does
    not reject NaN or infinite values: they propagate to the codes.

    Conversion raises ``NotFittedError`` for an unfitted transformer, and TypeError for a
    custom ``encoder=`` that is not a :class:`~skinfomax.Encoder` over layers the converter
    knows: an ``nn.Sequential`` of Linear, Conv2d, BatchNorm1d/2d, Flatten, the conv
    encoder's ``ImageView``, ReLU, LeakyReLU, ELU, Tanh, Sigmoid, Dropout or Identity.
    Custom decoders and critics do not matter: ``transform`` uses only the encoder.

    Examples
    --------
    >>> import pytest
    >>> onnxruntime = pytest.importorskip("onnxruntime")  # the onnx extra
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
        from skl2onnx import update_registered_converter
    except ImportError as exc:
        raise ImportError(f"ONNX export needs skl2onnx, which is not installed ({exc}); "
                          f"install the onnx extra: {_INSTALL}.") from exc
    # overwrite=True: a second call replaces the registration with the same one.
    update_registered_converter(InfoMaxVAETransformer, _ALIAS, _shape_calculator, _converter,
                                overwrite=True)


# -- the encoder as a list of steps ---------------------------------------------------------
def _refuse(what, path):
    return TypeError(
        f"ONNX export cannot convert {what} at encoder.{path}. The converter knows "
        f"skinfomax.Encoder over an {_SUPPORTED}. Build the custom encoder from those "
        "layers, or run transform in Python (or export the torch encoder yourself with "
        "torch.onnx.export)."
    )


def _flat_layers(module, path):
    """The leaf modules of nested ``nn.Sequential`` containers, with their dotted paths."""
    if type(module) is nn.Sequential:
        for name, child in module.named_children():
            yield from _flat_layers(child, f"{path}.{name}")
    else:
        yield path, module


def _check_encoder(vae):
    """The fitted encoder's body layers and head, or TypeError naming what cannot convert."""
    encoder = vae._engine.encoder
    if not isinstance(encoder, Encoder) or type(encoder).forward is not Encoder.forward:
        raise TypeError(
            f"ONNX export cannot convert the custom encoder {type(encoder).__qualname__}: its "
            "forward is arbitrary Python. It converts a skinfomax.Encoder(body, n_body_out, "
            f"n_components, n_info_components) whose body is an {_SUPPORTED}; build the "
            "encoder that way, or run transform in Python (or export the torch encoder "
            "yourself with torch.onnx.export)."
        )
    if type(encoder.head) is not nn.Linear:
        raise _refuse(f"a {type(encoder.head).__qualname__} head (not nn.Linear)", "head")
    layers = list(_flat_layers(encoder.body, "body"))
    for path, layer in layers:
        _check_layer(layer, path)
    return layers, encoder.head


def _check_layer(layer, path):
    kind = type(layer)
    if kind in (nn.Linear, ImageView, nn.LeakyReLU, nn.ELU) or kind in _ACTIVATIONS \
            or kind in _IDENTITY:
        return
    if kind is nn.Flatten:
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise _refuse(f"nn.Flatten(start_dim={layer.start_dim}, end_dim={layer.end_dim}) "
                          "(only start_dim=1, end_dim=-1)", path)
        return
    if kind is nn.Conv2d:
        if layer.padding_mode != "zeros":
            raise _refuse(f"nn.Conv2d with padding_mode={layer.padding_mode!r} "
                          "(only 'zeros')", path)
        return
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        if layer.running_mean is None:
            raise _refuse(f"{kind.__name__}(track_running_stats=False), which normalises by "
                          "each batch's statistics even in eval mode", path)
        return
    raise _refuse(f"a {kind.__module__}.{kind.__qualname__}", path)


# -- skl2onnx hooks -------------------------------------------------------------------------
def _fitted_model(operator):
    vae = operator.raw_operator
    check_is_fitted(vae)
    _check_encoder(vae)
    return vae


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

    vae = _fitted_model(operator)
    input_type = operator.inputs[0].type
    _check_input_shape(vae, input_type.shape)
    # As transform: float32 stays float32, anything else comes back as float64.
    output_type = FloatTensorType if isinstance(input_type, FloatTensorType) else DoubleTensorType
    n_rows = input_type.shape[0] if input_type.shape else None
    operator.outputs[0].type = output_type([n_rows, vae.n_components_out_])


def _converter(scope, operator, container):
    from onnx import TensorProto
    from skl2onnx.common.data_types import FloatTensorType

    vae = operator.raw_operator
    engine = vae._engine
    layers, head = _check_encoder(vae)
    if engine.precision != "float32":
        warnings.warn(f"The transformer was fitted with precision={engine.precision!r}: its "
                      "transform rounds the encoder's matrix work to that precision, the ONNX "
                      "graph computes in float32, so their codes differ by that rounding.",
                      UserWarning, stacklevel=2)
    graph = _Graph(scope, container)
    x = operator.inputs[0].full_name
    float_input = isinstance(operator.inputs[0].type, FloatTensorType)
    if len(operator.inputs[0].type.shape) == 4:
        x = graph.node("Flatten", x, axis=1)
    units = engine.units
    if units is not None:
        # As InputUnits.standardise: (X - center) / scale in float64, then float32.
        x = graph.node("Cast", x, to=TensorProto.DOUBLE)
        x = graph.node("Sub", [x, graph.constant(units.center, np.float64)])
        x = graph.node("Div", [x, graph.constant(units.scale, np.float64)])
        x = graph.node("Cast", x, to=TensorProto.FLOAT)
    elif not float_input:
        x = graph.node("Cast", x, to=TensorProto.FLOAT)
    for _, layer in layers:
        x = _emit_layer(graph, layer, x)
    # Only the head's rows of z_mean and c: the log-variance is not part of transform.
    n_z, _, n_c = engine.encoder.split_sizes
    rows = np.r_[0:n_z, 2 * n_z : 2 * n_z + n_c]
    weight = _array(head.weight)[rows]
    bias = _array(head.bias)[rows] if head.bias is not None else np.zeros(len(rows), np.float32)
    out = operator.outputs[0].full_name
    if float_input:
        graph.node("Gemm", [x, graph.constant(weight), graph.constant(bias)], transB=1,
                   output=out)
    else:
        x = graph.node("Gemm", [x, graph.constant(weight), graph.constant(bias)], transB=1)
        graph.node("Cast", x, to=TensorProto.DOUBLE, output=out)


def _array(tensor, dtype=np.float32):
    return tensor.detach().cpu().numpy().astype(dtype)


class _Graph:
    """Nodes and initialisers with unique names in skl2onnx's scope."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def constant(self, values, dtype=np.float32):
        from onnx import TensorProto

        values = np.asarray(values, dtype=dtype)
        onnx_type = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE,
                     np.int64: TensorProto.INT64}[np.dtype(dtype).type]
        name = self.scope.get_unique_variable_name("skinfomax_const")
        self.container.add_initializer(name, onnx_type, list(values.shape),
                                       values.ravel().tolist())
        return name

    def node(self, op_type, inputs, output=None, **attrs):
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        output = output or self.scope.get_unique_variable_name(f"skinfomax_{op_type.lower()}")
        self.container.add_node(op_type, inputs, [output],
                                name=self.scope.get_unique_operator_name(f"Skinfomax{op_type}"),
                                **attrs)
        return output


def _emit_layer(graph, layer, x):
    kind = type(layer)
    if kind in _IDENTITY:
        return x
    if kind in _ACTIVATIONS:
        return graph.node(_ACTIVATIONS[kind], x)
    if kind is nn.LeakyReLU:
        return graph.node("LeakyRelu", x, alpha=float(layer.negative_slope))
    if kind is nn.ELU:
        return graph.node("Elu", x, alpha=float(layer.alpha))
    if kind is nn.Flatten:
        return graph.node("Flatten", x, axis=1)
    if kind is ImageView:
        # 0 copies the batch size from the input.
        return graph.node("Reshape", [x, graph.constant([0, *layer.image_shape], np.int64)])
    if kind is nn.Linear:
        bias = (_array(layer.bias) if layer.bias is not None
                else np.zeros(layer.out_features, np.float32))
        return graph.node("Gemm", [x, graph.constant(_array(layer.weight)),
                                   graph.constant(bias)], transB=1)
    if kind is nn.Conv2d:
        inputs = [x, graph.constant(_array(layer.weight))]
        if layer.bias is not None:
            inputs.append(graph.constant(_array(layer.bias)))
        return graph.node("Conv", inputs, kernel_shape=list(layer.kernel_size),
                          strides=list(layer.stride), pads=_conv_pads(layer),
                          dilations=list(layer.dilation), group=int(layer.groups))
    # BatchNorm1d / BatchNorm2d in eval mode: the running statistics.
    n = layer.num_features
    scale = _array(layer.weight) if layer.affine else np.ones(n, np.float32)
    shift = _array(layer.bias) if layer.affine else np.zeros(n, np.float32)
    return graph.node("BatchNormalization",
                      [x, graph.constant(scale), graph.constant(shift),
                       graph.constant(_array(layer.running_mean)),
                       graph.constant(_array(layer.running_var))],
                      epsilon=float(layer.eps))


def _conv_pads(layer):
    """ONNX pads ``[top, left, bottom, right]`` of a Conv2d's padding (ints or a string)."""
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    if layer.padding == "same":  # torch puts the odd pixel at the end
        total = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size)]
        begin = [t // 2 for t in total]
        return [*begin, *(t - b for t, b in zip(total, begin))]
    return [*layer.padding, *layer.padding]
