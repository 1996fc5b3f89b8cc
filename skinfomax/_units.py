"""Input units: the centre and scale that put Gaussian-likelihood data in standard units.

The networks see ``(X - center) / scale``, of order one whatever the data's
units, so a fit on ``a * X + b`` equals the fit on X. The statistics are
taken once, at the first fit, in float64 on the host, block by block (or
batch by batch when streamed). Decoder outputs are mapped back with
:meth:`InputUnits.restore`; a reconstruction NLL in standard units plus
:attr:`InputUnits.log_scale_sum` is the NLL in the data's units.
"""

import numpy as np

from ._utils import host_blocks


# A group whose spread is below this fraction of its largest magnitude is
# constant (float64 rounding, not data); it gets that magnitude as its scale.
_RELATIVE_MIN_SPREAD = 1e-12
# Each scale is at least this fraction of its group's range in the training
# data (a Gaussian-like feature of a few hundred rows or more spans over 6
# standard deviations, so its scale is its standard deviation).
_RANGE_FRACTION = 0.1


def _blocks(X):
    for start, stop in host_blocks(X.shape[0]):
        yield np.asarray(X[start:stop], dtype=np.float64)


def to_float32(X, what="X"):
    """X as a C-contiguous, writable float32 array; ValueError if a value overflows float32."""
    with np.errstate(over="ignore"):  # overflow is reported below, with its cause
        X32 = np.require(X, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    if X32.dtype != getattr(X, "dtype", None) and not np.isfinite(X32).all():
        raise ValueError(
            f"{what} has values beyond float32's range (|x| > 3.4e38), which the networks "
            "compute in; rescale X."
        )
    return X32


class InputUnits:
    """Per-group centre and scale of the input features, with the maps to and from them.

    A group is one feature or, for images (``n_channels`` given), one channel
    of channels-first flat rows: per-pixel statistics would blow up pixels that
    are almost always blank. Statistics are population mean and standard
    deviation over the rows (and the group's features).

    Parameters
    ----------
    center, scale : ndarray of shape (n_features,)
        float64; each scale is the group's standard deviation, floored at a
        tenth of its range (so positive).
    feature_variance : ndarray of shape (n_features,)
        Each feature's variance in standard units.
    constant : ndarray of bool, shape (n_features,)
        Features whose group was constant in training: restored to their
        constant, whatever the decoder says.
    """

    def __init__(self, center, scale, feature_variance, constant):
        self.center, self.scale = center, scale
        self.feature_variance, self.constant = feature_variance, constant
        self.log_scale_sum = float(np.log(scale).sum())

    @classmethod
    def fit(cls, X, n_channels=None):
        """The units of X (rows of a 2-D array, possibly a memmap), in three passes over it.

        Every group is first divided by its largest magnitude, so that squares
        cannot overflow float64 whatever the units.
        """
        n_rows, n_features = X.shape
        groups = n_features if n_channels is None else n_channels
        low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
        for block in _blocks(X):
            np.minimum(low, block.min(axis=0), out=low)
            np.maximum(high, block.max(axis=0), out=high)
        magnitude = _group_max(np.maximum(np.abs(low), np.abs(high)), groups)
        magnitude[magnitude == 0] = 1.0  # an all-zero group: nothing to scale
        mean = sum((block / magnitude).sum(axis=0) for block in _blocks(X)) / n_rows
        variance = sum(
            np.square(block / magnitude - mean).sum(axis=0) for block in _blocks(X)
        ) / n_rows
        group_mean = _group_mean(mean, groups)
        group_variance = _group_mean(variance + np.square(mean - group_mean), groups)
        spread = np.sqrt(group_variance)
        constant = spread <= _RELATIVE_MIN_SPREAD
        spread[constant] = 1.0  # scaled by its magnitude
        # A rare value (a pixel that is almost always blank) has a tiny
        # standard deviation: floored at a fraction of the group's range, no
        # training value lies more than 1 / _RANGE_FRACTION scales from the
        # centre, and held-out rows are not blown up either.
        value_range = _group_max((high - low) / magnitude, groups)
        spread = np.maximum(spread, _RANGE_FRACTION * value_range)
        return cls(group_mean * magnitude, spread * magnitude, variance / np.square(spread),
                   constant)

    def state(self):
        """The arrays that define these units, by constructor argument (for model files)."""
        return {"center": self.center, "scale": self.scale,
                "feature_variance": self.feature_variance, "constant": self.constant}

    def standardise(self, X, what="X"):
        """``(X - center) / scale`` computed in float64, returned as C-contiguous float32.

        Raises ValueError when a standardised value overflows float32: a row
        that far (> 3.4e38 training standard deviations) from the training
        data cannot be encoded.
        """
        out = np.empty(X.shape, dtype=np.float32)
        with np.errstate(over="ignore"):  # overflow is reported below, with its cause
            for (start, _), block in zip(host_blocks(X.shape[0]), _blocks(X)):
                out[start : start + block.shape[0]] = (block - self.center) / self.scale
        if not np.isfinite(out).all():
            raise ValueError(
                f"{what} has values so far from the training data (> 3.4e38 of its standard "
                "deviations) that the networks' float32 cannot hold them."
            )
        return out

    def restore(self, X):
        """Standard units back to the data's: ``X * scale + center``, in float64.

        Constant features get their constant back exactly.
        """
        restored = X.astype(np.float64) * self.scale + self.center
        return np.where(self.constant, self.center, restored)


def _group_max(values, groups):
    return np.repeat(values.reshape(groups, -1).max(axis=1), values.size // groups)


def _group_mean(values, groups):
    return np.repeat(values.reshape(groups, -1).mean(axis=1), values.size // groups)
