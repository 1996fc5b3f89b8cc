"""Input units: the networks see ``(X - center) / scale``, so a fit on ``a * X + b`` equals the
fit on X (an NLL plus ``log_scale_sum`` is in the data's units); :class:`Rows`: X in those
units on the device, whole or streamed.
"""

import numpy as np
import torch

from ._utils import batch_slices, host_blocks, take_rows

# A group whose spread is below this fraction of its largest magnitude is constant (float64
# rounding, not data); it gets that magnitude as its scale.
_RELATIVE_MIN_SPREAD = 1e-12
# Each scale is at least this fraction of its group's training range (a Gaussian-like
# feature of a few hundred rows spans over 6 sds, so its scale stays its sd).
_RANGE_FRACTION = 0.1


def _blocks(X):
    for start, stop in host_blocks(X.shape[0]):
        yield np.asarray(X[start:stop], dtype=np.float64)


def to_float32(X, what="X"):
    """X as a C-contiguous, writable float32 array; ValueError if a value overflows float32."""
    with np.errstate(over="ignore"):  # overflow is reported below, with its cause
        X32 = np.require(X, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    if X32.dtype != getattr(X, "dtype", None) and not np.isfinite(X32).all():
        raise ValueError(f"{what} has values beyond float32's range (|x| > 3.4e38), which the "
                         "networks compute in; rescale X.")
    return X32


class InputUnits:
    """Per-group centre and scale (float64, per feature), each feature's variance in standard
    units and which were ``constant`` in training. A group is a feature or, for images, a
    channel (per-pixel statistics would blow up pixels that are almost always blank)."""

    def __init__(self, center, scale, feature_variance, constant):
        self.center, self.scale = center, scale
        self.feature_variance, self.constant = feature_variance, constant
        self.log_scale_sum = float(np.log(scale).sum())

    @classmethod
    def fit(cls, X, n_channels=None):
        """The units of X (possibly a memmap) in three passes, each group divided by its largest
        magnitude first so that squares cannot overflow float64."""
        n_rows, n_features = X.shape
        groups = n_features if n_channels is None else n_channels
        low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
        for block in _blocks(X):
            np.minimum(low, block.min(axis=0), out=low)
            np.maximum(high, block.max(axis=0), out=high)
        magnitude = _per_group(np.max, np.maximum(np.abs(low), np.abs(high)), groups)
        magnitude[magnitude == 0] = 1.0  # an all-zero group: nothing to scale
        mean = sum((block / magnitude).sum(axis=0) for block in _blocks(X)) / n_rows
        variance = sum(np.square(block / magnitude - mean).sum(axis=0)
                       for block in _blocks(X)) / n_rows
        group_mean = _per_group(np.mean, mean, groups)
        group_variance = _per_group(np.mean, variance + np.square(mean - group_mean), groups)
        spread = np.sqrt(group_variance)
        constant = spread <= _RELATIVE_MIN_SPREAD
        spread[constant] = 1.0  # scaled by its magnitude
        # Floored so no value lies over 1 / _RANGE_FRACTION scales out (a rare pixel's sd is tiny).
        value_range = _per_group(np.max, (high - low) / magnitude, groups)
        spread = np.maximum(spread, _RANGE_FRACTION * value_range)
        return cls(group_mean * magnitude, spread * magnitude, variance / np.square(spread),
                   constant)

    def state(self):
        """The arrays that define these units, by constructor argument (for model files)."""
        return {"center": self.center, "scale": self.scale,
                "feature_variance": self.feature_variance, "constant": self.constant}

    def standardise(self, X, what="X"):
        """``(X - center) / scale`` in float64, as C-contiguous float32; ValueError on overflow."""
        out = np.empty(X.shape, dtype=np.float32)
        with np.errstate(over="ignore"):  # overflow is reported below, with its cause
            for (start, _), block in zip(host_blocks(X.shape[0]), _blocks(X)):
                out[start : start + block.shape[0]] = (block - self.center) / self.scale
        if not np.isfinite(out).all():
            raise ValueError(f"{what} has values so far from the training data (> 3.4e38 of its "
                             "standard deviations) that the networks' float32 cannot hold them.")
        return out

    def covering(self, X):
        """These units (``self`` if none changes), the scale of each feature that X, a later
        chunk of a stream, takes over ``1 / _RANGE_FRACTION`` scales from the centre widened to
        X's spread about the centre (at least that fraction of its reach)."""
        reach = np.zeros(self.scale.shape)
        for block in _blocks(X):
            np.maximum(reach, np.abs(block - self.center).max(axis=0), out=reach)
        wider = reach > self.scale / _RANGE_FRACTION
        if not wider.any():
            return self
        # Divided by the reach first, so that squares cannot overflow float64.
        unit = np.where(wider, reach, 1.0)
        spread = unit * np.sqrt(sum(np.square((block - self.center) / unit).sum(axis=0)
                                    for block in _blocks(X)) / X.shape[0])
        scale = np.where(wider, np.maximum(spread, _RANGE_FRACTION * reach), self.scale)
        return InputUnits(self.center, scale, self.feature_variance, self.constant & ~wider)

    def restore(self, X):
        """``X * scale + center`` in float64; constant features get their constant exactly."""
        restored = X.astype(np.float64) * self.scale + self.center
        return np.where(self.constant, self.center, restored)


def _per_group(reduce, values, groups):
    """``reduce`` over each group's features, repeated for each of them."""
    return np.repeat(reduce(values.reshape(groups, -1), axis=1), values.size // groups)


class Rows:
    """Rows of X as the networks take them (standardised by ``units``, or just float32),
    resident on the device or streamed a batch at a time (a memmap)."""

    def __init__(self, X, device, stream=False, units=None, what="X"):
        self.device, self.n_rows, self.units, self.what = device, X.shape[0], units, what
        if stream:
            self.host, self.tensor = X, None
        else:
            self.host, self.tensor = None, torch.from_numpy(self._float32(X)).to(device)

    def _float32(self, rows):
        if self.units is None:
            return to_float32(rows, self.what)
        return self.units.standardise(rows, self.what)

    def _send(self, rows):
        # One batch: copied when read-only (a memmap), so torch may own it.
        return torch.from_numpy(self._float32(rows)).to(self.device,
                                                         non_blocking=self.device.type == "cuda")

    def batches(self, batch_size, generator=None):
        """Batches of rows on the device (``_utils.batch_slices``)."""
        where = self.device if self.tensor is not None else torch.device("cpu")
        for index in batch_slices(self.n_rows, batch_size, generator, where):
            yield (take_rows(self.tensor, index) if self.tensor is not None
                   else self._send(self.host[index.numpy()]))

    def chunks(self, size):
        """Consecutive chunks of exactly ``size`` rows (the last zero-padded)."""
        for start in range(0, self.n_rows, size):
            if self.tensor is not None:
                chunk = self.tensor[start : start + size]
            else:
                chunk = self._send(self.host[start : start + size])
            if chunk.shape[0] < size:
                chunk = torch.cat([chunk, chunk.new_zeros(size - chunk.shape[0], *chunk.shape[1:])])
            yield chunk
