"""Model files that cannot run code, and pickling. A model file is one safetensors file of
tensors with metadata ``format``, ``format_version``, ``document`` (all else as JSON) and a
``sha256`` over them (against damage); reading only parses JSON and copies numbers.
"""

import copy
import hashlib
import io
import json
import os
import platform
import struct
from dataclasses import asdict

import numpy as np
import safetensors
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors
from sklearn.utils.validation import check_is_fitted

from ._critics import Bound
from ._likelihoods import build_likelihood
from ._networks import NetworkSpec, build_networks
from ._training import Engine, TrainingConfig
from ._units import InputUnits
from ._utils import generators, resolve_device, seeded
from ._version import __version__

FORMAT = "skinfomax-model"
# 2: the training config holds its bound (estimator and cap) and names critic_in_every_step.
FORMAT_VERSION = 2
_TAG = "$type"  # key that marks a tagged (non-JSON) value


# -- JSON values ------------------------------------------------------------------
def to_json(value, name):
    """``value`` as JSON-ready data (tuples, arrays, devices, RandomStates tagged); TypeError
    naming ``name`` when it has no JSON form."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, list):
        return [to_json(v, name) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "value": [to_json(v, name) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value) or _TAG in value:
            raise TypeError(f"{name} has a dict with non-string keys or a {_TAG!r} key.")
        return {k: to_json(v, f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(value, np.ndarray) and (value.dtype.kind in "biuf" or value.dtype == object):
        return {_TAG: "ndarray", "dtype": value.dtype.str if value.dtype != object else "object",
                "shape": list(value.shape), "value": [to_json(v, name) for v in value.ravel()]}
    if isinstance(value, torch.device):
        return {_TAG: "device", "value": str(value)}
    if isinstance(value, np.random.RandomState):
        kind, keys, pos, has_gauss, cached = value.get_state()
        return {_TAG: "RandomState", "value": [kind, keys.tolist(), pos, has_gauss, cached]}
    raise TypeError(f"{name} is a {type(value).__name__}, which a model file cannot hold.")


def from_json(value):
    """Inverse of :func:`to_json`."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TAG)
    if kind is None:
        return {k: from_json(v) for k, v in value.items()}
    if kind == "tuple":
        return tuple(from_json(v) for v in value["value"])
    if kind == "ndarray":
        dtype = object if value["dtype"] == "object" else np.dtype(value["dtype"])
        items = [from_json(v) for v in value["value"]]
        array = np.empty(len(items), dtype=dtype)
        array[:] = items
        return array.reshape(value["shape"])
    if kind == "device":
        return torch.device(value["value"])
    if kind == "RandomState":
        kind_, keys, pos, has_gauss, cached = value["value"]
        state = np.random.RandomState()
        state.set_state((kind_, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        return state
    raise ValueError(f"unknown tagged value {kind!r}")


# -- the file ---------------------------------------------------------------------
def _digest(version, document, tensors):
    digest = hashlib.sha256()

    def add(data):  # length-prefixed: no two contents hash the same stream
        digest.update(struct.pack("<Q", len(data)))
        digest.update(data)

    add(str(version).encode())
    add(document.encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        add(name.encode())
        add(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        add(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def versions():
    """The versions of what writes a file (recorded, and shown when a file is refused)."""
    return {"skinfomax": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def write_model_file(path, tensors, document):
    """Write ``tensors`` and ``document`` (JSON-ready) beside ``path``, then rename it over
    ``path``: a crash mid-write never leaves a half-written model under that name."""
    text = json.dumps({**document, "written_by": versions()}, sort_keys=True)
    # Private copies: safetensors refuses tensors that share memory.
    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "document": text,
                "sha256": _digest(FORMAT_VERSION, text, tensors)}
    data = save_tensors(tensors, metadata=metadata)
    partial = f"{os.fspath(path)}.partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def _unusable(path, why):
    return ValueError(f"{os.fspath(path)!r} is not a usable skinfomax model file: {why}")


def read_model_file(path):
    """``(tensors, document)`` of a model file; ValueError naming the file and the reason
    for anything else (FileNotFoundError when missing)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {os.fspath(path)!r}.")
    try:
        with safe_open(os.fspath(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unusable(path, f"it is not a complete safetensors file ({exc}).") from None
    if metadata.get("format") != FORMAT:
        raise _unusable(path, "it is a safetensors file without skinfomax's metadata.")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) < 1:
        raise _unusable(path, f"its format version {version!r} is not a version number.")
    if int(version) > FORMAT_VERSION:
        raise _unusable(path, f"it has format version {version}, written by a newer skinfomax; "
                      f"this one (skinfomax {versions()['skinfomax']}) reads up to version "
                      f"{FORMAT_VERSION}. Upgrade skinfomax to load it.")
    text = metadata.get("document", "")
    if metadata.get("sha256") != _digest(int(version), text, tensors):
        raise _unusable(path, "its contents do not match its SHA-256 digest (damaged or edited).")
    try:
        document = json.loads(text)
    except ValueError as exc:  # only a file written with a matching digest on purpose
        raise _unusable(path, f"its document is not JSON ({exc}).") from None
    return tensors, document


# -- pickling: modules and optimisers as one torch.save blob, so shared references survive --
def dump_torch_state(objects):
    """Serialise a dict of torch objects (modules, optimisers, engine) to bytes."""
    buffer = io.BytesIO()
    torch.save(objects, buffer)
    return buffer.getvalue()


def load_torch_state(blob, device):
    """``(objects, device used)``: ``device``, else the CPU with a warning."""
    device = resolve_device(device, fallback=True)
    # weights_only=False: whole modules, from a pickle the caller already chose to trust.
    return torch.load(io.BytesIO(blob), map_location=device, weights_only=False), device


# -- the engine's state ---------------------------------------------------------------
def _named_modules(engine):
    modules = {"encoder": engine.encoder, "decoder": engine.decoder, "critic": engine.critic,
               "likelihood": engine.likelihood}
    if engine.score_critic is not engine.critic:
        modules["score_critic"] = engine.score_critic
    return modules


def _named_optimizers(engine):
    return {"vae_optimizer": engine.vae_optimizer, "critic_optimizer": engine.critic_optimizer}


def _with_prefix(tensors, prefix):
    """The entries of ``tensors`` whose names start with ``prefix``, without it."""
    return {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}


def engine_state(engine):
    """``(tensors, metadata)``: every tensor training needs to resume, by name and not copied
    (``<module>.<key>``, ``<optimizer>.state.<index>.<key>``, ``rng.*``, ``units.*``), and the
    rest as plain Python values."""
    tensors = {f"{name}.{key}": tensor for name, module in _named_modules(engine).items()
               for key, tensor in module.state_dict().items()}
    for name, optimizer in _named_optimizers(engine).items():
        if optimizer is not None:
            for index, state in optimizer.state_dict()["state"].items():
                tensors.update({f"{name}.state.{index}.{k}": t for k, t in state.items()})
    if engine.rng_state is not None:
        tensors["rng.cpu"], tensors["rng.noise"] = engine.rng_state
    if engine.units is not None:
        tensors.update({f"units.{k}": torch.from_numpy(np.asarray(v))
                        for k, v in engine.units.state().items()})
    metadata = {"spec": asdict(engine.spec), "config": asdict(engine.config),
                "seed": engine.seed, "device": str(engine.device),
                "cuda_graphs": engine.cuda_graphs, "history": engine.history,
                "optimizers": engine.vae_optimizer is not None,
                "scaler": None if engine.scaler is None else engine.scaler.state_dict()}
    return tensors, metadata


def _config_of(metadata):
    config = dict(metadata["config"])
    if "bound" in config:
        return TrainingConfig(**{**config, "bound": Bound(**config["bound"])})
    # Format 1: the bound's name as "estimator" ("mi_estimator" in the first files), its cap
    # apart (None: written before critics were capped), "critic_alongside".
    estimator = config.pop("estimator", None) or config.pop("mi_estimator")
    config["critic_in_every_step"] = config.pop("critic_alongside", True)
    return TrainingConfig(**config, bound=Bound(estimator, metadata.get("critic_cap")))


def engine_from_state(metadata, tensors, *, device, encoder=None, decoder=None, critic=None):
    """The engine :func:`engine_state` describes, on ``device``; on another kind of device
    the noise stream restarts from the seed (CPU and CUDA generators share no state)."""
    spec = NetworkSpec(**metadata["spec"])
    seed = metadata["seed"]
    with seeded(seed):
        networks = build_networks(spec, encoder, decoder, critic)
    units = None
    if "units.center" in tensors:
        units = InputUnits(**{k: tensors[f"units.{k}"].cpu().numpy()
                              for k in ("center", "scale", "feature_variance", "constant")})
    # Placeholder variances: every value of the likelihood is then loaded.
    likelihood = build_likelihood(spec.likelihood, np.ones(spec.n_features))
    engine = Engine(spec, networks, likelihood, device=device, seed=seed, units=units,
                    config=_config_of(metadata), cuda_graphs=metadata["cuda_graphs"])
    engine.history = list(metadata["history"])
    if any(name.startswith("score_critic.") for name in tensors):
        engine.score_critic = copy.deepcopy(engine.critic)
    for name, module in _named_modules(engine).items():
        module.load_state_dict(_with_prefix(tensors, f"{name}."), strict=True)
    if metadata["optimizers"]:
        engine.make_optimizers()  # this device's fused / capturable flags
        for name, optimizer in _named_optimizers(engine).items():
            per_parameter = {}
            for key, tensor in _with_prefix(tensors, f"{name}.state.").items():
                index, entry = key.split(".", 1)
                per_parameter.setdefault(int(index), {})[entry] = tensor
            optimizer.load_state_dict({"state": per_parameter,
                                       "param_groups": optimizer.state_dict()["param_groups"]})
        if metadata["scaler"] is not None and engine.scaler is not None:
            engine.scaler.load_state_dict(metadata["scaler"])
    if "rng.cpu" in tensors:
        noise = tensors["rng.noise"]
        if torch.device(metadata["device"]).type != engine.device.type:
            noise = torch.Generator(device=engine.device).manual_seed(seed).get_state()
        engine.rng_state = (tensors["rng.cpu"], noise)
        generators(seed, engine.device, engine.rng_state)  # a bad state fails here, not in fit
    return engine


# -- the estimator ------------------------------------------------------------------
# Fitted attributes that hold torch objects: the engine and views of its networks.
TORCH_ATTRIBUTES = ("_engine", "encoder_", "decoder_", "critic_", "likelihood_")
_CUSTOM_NETWORKS = ("encoder", "decoder", "critic")
# What files written before the implementation modules became private record.
_FORMER_NAMES = {"InfoMaxVAETransformer": "skinfomax.transformer.InfoMaxVAETransformer"}


def _qualified_name(kind):
    # The public name: implementation modules may move without changing model files.
    return f"skinfomax.{kind.__qualname__}"


def _describe_code(value):
    """Where a custom module or factory comes from, for messages (never imported back)."""
    named = value if hasattr(value, "__qualname__") else type(value)  # a function or an instance
    return f"{getattr(named, '__module__', '?')}.{named.__qualname__}"


def save_estimator(model, path):
    """Write a fitted estimator's parameters, fitted attributes and engine to ``path``."""
    check_is_fitted(model)
    params = model.get_params(deep=False)
    custom = {name: _describe_code(params[name]) for name in _CUSTOM_NETWORKS
              if params[name] is not None}
    fitted = {k: v for k, v in vars(model).items() if k not in params and k not in TORCH_ATTRIBUTES}
    tensors, engine = engine_state(model._engine)
    document = {
        "estimator": _qualified_name(type(model)),
        "params": {k: to_json(v, f"parameter {k}") for k, v in params.items()
                   if k not in _CUSTOM_NETWORKS},
        "custom_networks": custom,
        "fitted": {k: to_json(v, f"fitted attribute {k}") for k, v in fitted.items()},
        "engine": to_json(engine, "the training state"),
    }
    write_model_file(path, tensors, document)


def load_estimator(cls, path, device=None, **networks):
    """The fitted ``cls`` in ``path`` (see ``InfoMaxVAETransformer.load``)."""
    tensors, document = read_model_file(path)
    name = f"{path!r}"
    if document.get("estimator") not in (_qualified_name(cls), _FORMER_NAMES.get(cls.__name__)):
        raise ValueError(f"{name} holds a {document.get('estimator')!r}, not a {cls.__name__}.")
    recorded = document.get("custom_networks", {})
    for network, code in networks.items():
        if network in recorded and code is None:
            raise ValueError(
                f"{name} was fitted with a custom {network} ({recorded[network]}); a model "
                f"file holds its weights, not its code: pass {network}=<the same module or "
                "factory> to load. (pickle and joblib store the code, and run it on load.)")
        if network not in recorded and code is not None:
            raise ValueError(f"{name} was fitted with the built-in {network}; "
                             f"do not pass {network}=.")
    try:
        target = resolve_device(document["engine"]["device"] if device is None else device,
                                fallback=device is None)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{name} records no usable device: {exc}") from None
    try:
        model = cls(**{k: from_json(v) for k, v in document["params"].items()}, **networks)
        if device is not None:
            model.device = device
        model._validate_params()
        engine = engine_from_state(from_json(document["engine"]), tensors, device=target,
                                   **networks)
        fitted = {k: from_json(v) for k, v in document["fitted"].items()}
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ValueError(f"{name} passed its integrity check but does not describe a model "
                         f"this skinfomax can rebuild: {type(exc).__name__}: {exc}") from None
    vars(model).update(fitted)
    return model._with_engine(engine)
