"""Pickling of the fitted torch state, portable across devices.

Fitted modules and optimisers travel as one ``torch.save`` blob, so shared
references (the optimisers point at the modules' parameters) survive, and
``map_location`` lets a model trained on a GPU load on a CPU-only machine.
"""

import io
import warnings

import torch

__all__ = ["available_device", "dump_torch_state", "load_torch_state"]


def dump_torch_state(objects):
    """Serialise a dict of torch objects (modules, optimisers, engine) to bytes."""
    buffer = io.BytesIO()
    torch.save(objects, buffer)
    return buffer.getvalue()


def available_device(device, stacklevel=3):
    """``device`` if this machine has it, else the CPU with a UserWarning saying so."""
    device = torch.device(device)
    available = device.type == "cpu" or (
        device.type == "cuda"
        and torch.cuda.is_available()
        and (device.index or 0) < torch.cuda.device_count()
    ) or (device.type == "mps" and torch.backends.mps.is_available())
    if available:
        return device
    warnings.warn(
        f"This model was fitted on {device}, which is not available here; "
        "loading it on the CPU.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return torch.device("cpu")


def load_torch_state(blob, device):
    """Inverse of :func:`dump_torch_state`; returns ``(objects, device_used)``.

    Falls back to the CPU, with a warning, when ``device`` is not available here.
    """
    device = available_device(device, stacklevel=4)
    # weights_only=False: the blob holds whole modules, and it comes from the
    # enclosing pickle, which the caller already chose to trust.
    objects = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)
    return objects, device
