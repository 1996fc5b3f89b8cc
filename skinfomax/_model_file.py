"""Model files that cannot run code: one safetensors file of tensors (weights, optimiser and
stream states) with string metadata ``format``, ``format_version``, ``document`` (all else as
JSON) and ``sha256`` over the version, the document and every tensor.

Reading parses JSON and copies numbers; nothing is imported, unpickled or executed. The
digest guards against damage, not forgery: a forged file holds only numbers and JSON.
"""

import hashlib
import io
import json
import os
import platform
import struct

import numpy as np
import safetensors
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors

from ._utils import available_device
from ._version import __version__

FORMAT = "skinfomax-model"
FORMAT_VERSION = 1
_TAG = "$type"  # key that marks a tagged (non-JSON) value


# -- JSON values ------------------------------------------------------------------
def to_json(value, name):
    """``value`` as JSON-ready data, tuples, arrays, devices and RandomStates tagged;
    TypeError naming ``name`` when it has no JSON form.
    """
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
    """Write ``tensors`` and ``document`` (JSON-ready) next to ``path`` and rename it over
    ``path``: a crash mid-write never leaves a half-written model under that name.
    """
    text = json.dumps({**document, "written_by": versions()}, sort_keys=True)
    # Private copies: safetensors refuses tensors that share memory.
    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "document": text,
                "sha256": _digest(FORMAT_VERSION, text, tensors)}
    data = save_tensors(tensors, metadata=metadata)
    path = os.fspath(path)
    partial = f"{path}.partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def _refuse(path, why):
    return ValueError(f"{os.fspath(path)!r} is not a usable skinfomax model file: {why}")


def read_model_file(path):
    """``(tensors, document)`` of a model file; ValueError naming the file and the reason
    for anything else (FileNotFoundError when missing).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {os.fspath(path)!r}.")
    try:
        with safe_open(os.fspath(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _refuse(path, f"it is not a complete safetensors file ({exc}).") from None
    if metadata.get("format") != FORMAT:
        raise _refuse(path, "it is a safetensors file without skinfomax's metadata.")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) < 1:
        raise _refuse(path, f"its format version {version!r} is not a version number.")
    if int(version) > FORMAT_VERSION:
        raise _refuse(path, f"it has format version {version}, written by a newer skinfomax; "
                      f"this one (skinfomax {versions()['skinfomax']}) reads up to version "
                      f"{FORMAT_VERSION}. Upgrade skinfomax to load it.")
    text = metadata.get("document", "")
    if metadata.get("sha256") != _digest(int(version), text, tensors):
        raise _refuse(path, "its contents do not match its SHA-256 digest (damaged or edited).")
    try:
        document = json.loads(text)
    except ValueError as exc:  # only a file written with a matching digest on purpose
        raise _refuse(path, f"its document is not JSON ({exc}).") from None
    return tensors, document


# -- pickling -----------------------------------------------------------------------
# Modules and optimisers travel as one ``torch.save`` blob, so shared references survive,
# and ``map_location`` lets a GPU model load on a CPU-only machine.
def dump_torch_state(objects):
    """Serialise a dict of torch objects (modules, optimisers, engine) to bytes."""
    buffer = io.BytesIO()
    torch.save(objects, buffer)
    return buffer.getvalue()


def load_torch_state(blob, device):
    """``(objects, device used)``: ``device``, else the CPU with a warning."""
    device = available_device(device, stacklevel=4)
    # weights_only=False: whole modules, from a pickle the caller already chose to trust.
    objects = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)
    return objects, device
