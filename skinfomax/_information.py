"""A standalone mutual-information estimator built on the transformer's critic.

:func:`mutual_information` validates its inputs, splits the samples into
cross-fitting folds, standardises each fold's parts, and hands the torch work
to :mod:`skinfomax.estimation`, which trains the same
:class:`~skinfomax.networks.Critic` on the same bounds
(:mod:`skinfomax.objectives`) that :class:`~skinfomax.InfoMaxVAETransformer`
uses during training.
"""

from collections import namedtuple
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from numpy.typing import ArrayLike
from sklearn.model_selection import KFold, train_test_split
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array, check_consistent_length

from ._critics import CriticCandidate, CriticConfig, estimate_mi
from ._utils import (
    as_positive_ints,
    resolve_device,
    seed_from,
    torch_threads,
    warn_if_implausible,
)


# "auto": joint layers of growing width under a narrow second layer, at the
# call's learning rate and weight decay, then one undecayed critic at
# STEEP_RATE times the learning rate (last: the least regularised).
AUTO_CRITICS = ((32, 32), (64, 32), (128, 32), (256, 32))
STEEP_CRITIC = (32, 32)
STEEP_RATE = 3.0


class MIEstimate(namedtuple("MIEstimate", ["mi", "se"])):
    """A mutual-information estimate in nats and its standard error.

    Unpacks as ``(mi, se)``. Three attributes say how it was obtained:
    ``critic``, the candidate evaluated on the test parts (a
    ``CriticCandidate(sizes, learning_rate, weight_decay)``),
    ``critic_hidden_layer_sizes``, its layer sizes, and ``validation_mi``,
    the validation bound of every candidate, keyed by candidate (empty when
    a single one was given).
    """

    def __new__(cls, mi, se, critic=None, validation_mi=None):
        self = super().__new__(cls, mi, se)
        self.critic = critic
        self.validation_mi = dict(validation_mi or {})
        return self

    @property
    def critic_hidden_layer_sizes(self):
        return None if self.critic is None else self.critic.sizes

    def __getnewargs__(self):
        return (self.mi, self.se, self.critic, self.validation_mi)


def _layer_sizes(value):
    """``value`` as a non-empty tuple of positive ints, or None if it is not one."""
    return as_positive_ints(value) or None


def _critic_candidates(value, learning_rate, weight_decay):
    """The critics to try, from the ``critic_hidden_layer_sizes`` argument."""
    if isinstance(value, str):
        return (*(CriticCandidate(sizes, learning_rate, weight_decay) for sizes in AUTO_CRITICS),
                CriticCandidate(STEEP_CRITIC, STEEP_RATE * learning_rate, 0.0))
    single = _layer_sizes(value)
    if single is not None:
        return (CriticCandidate(single, learning_rate, weight_decay),)
    candidates = [_layer_sizes(v) for v in value] if not np.isscalar(value) else [None]
    if not candidates or any(c is None for c in candidates):
        raise ValueError(
            "critic_hidden_layer_sizes must be 'auto', a non-empty sequence of positive "
            "integers, or a list of such sequences (candidates chosen by validation bound), "
            f"got {value!r}."
        )
    # Duplicates dropped, order kept.
    return tuple(CriticCandidate(sizes, learning_rate, weight_decay)
                 for sizes in dict.fromkeys(candidates))


def _as_2d(a, name):
    a = check_array(a, dtype=np.float64, ensure_2d=False, input_name=name)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    elif a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got an array of shape {a.shape}.")
    return a


def _standardise(train, *others, scaling="standard", seed=0):
    if scaling == "quantile":
        qt = QuantileTransformer(
            n_quantiles=min(1000, train.shape[0]), output_distribution="normal", random_state=seed
        ).fit(train)
        return [qt.transform(a).astype(np.float32) for a in (train, *others)]
    mean, sd = train.mean(axis=0), train.std(axis=0)
    sd[sd == 0] = 1.0
    return [((a - mean) / sd).astype(np.float32) for a in (train, *others)]


@validate_params(
    {
        "X": ["array-like"],
        "Z": ["array-like"],
        "estimator": [StrOptions({"nwj", "dv", "infonce"})],
        "scaling": [StrOptions({"standard", "quantile"})],
        "n_folds": [Interval(Integral, 2, None, closed="left"), None],
        "test_size": [Interval(Real, 0, 1, closed="neither")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "critic_hidden_layer_sizes": [StrOptions({"auto"}), "array-like"],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "n_critics": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def mutual_information(
    X: ArrayLike,
    Z: ArrayLike,
    estimator: str = "nwj",
    *,
    scaling: str = "standard",
    n_folds: int | None = 5,
    test_size: float = 0.3,
    validation_fraction: float = 0.2,
    critic_hidden_layer_sizes="auto",
    batch_size: int = 256,
    max_iter: int = 200,
    learning_rate: float = 1e-3,
    n_iter_no_change: int = 20,
    weight_decay: float = 0.5,
    n_critics: int = 5,
    device: str = "cpu",
    n_threads: int | None = None,
    n_jobs: int | None = None,
    random_state=None,
    verbose: int = 0,
) -> MIEstimate:
    """Estimate I(X; Z) in nats with a trained critic, on held-out samples.

    The paired samples are cross-fitted: split into ``n_folds`` folds, each
    held out once while the others are split into train / validation parts.
    A critic T(x, z) (the transformer's :class:`~skinfomax.networks.Critic`)
    is trained with AdamW (Adam when ``weight_decay=0``) to maximise the
    chosen lower bound on the train part, early-stopped on the validation
    part (best epoch kept), ``n_critics`` times from different seeds, and the
    bound of the mean of their scores is evaluated on the held-out fold in
    fixed disjoint batches of ``batch_size``, taking every mismatched pair of
    a batch as a draw from the product of the marginals. Every sample is thus
    scored once, by critics that never saw it. By default this is done for
    several critic widths and the width is chosen on validation rows (see
    ``critic_hidden_layer_sizes``). X and Z are standardised with each train
    part's statistics first (``scaling``; MI is invariant to such maps).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x) or (n_samples,)
    Z : array-like of shape (n_samples, n_features_z) or (n_samples,)
        Paired samples: row i of X goes with row i of Z.
    estimator : {"nwj", "dv", "infonce"}, default="nwj"
        The bound: NWJ (unbiased per batch, high variance at large MI),
        Donsker-Varadhan (tighter, biased by the log), InfoNCE (low variance,
        never above ``log(batch_size)``).
    scaling : {"standard", "quantile"}, default="standard"
        Per-feature map fitted on the train part: "standard" (mean 0, sd 1)
        or "quantile" (ranks mapped to a standard normal, sklearn's
        ``QuantileTransformer``). Both are invertible per feature, so they
        leave I(X; Z) unchanged; "quantile" tames heavy tails (standardising
        Cauchy-like data squashes its bulk to a point).
    n_folds : int or None, default=5
        Folds of the cross-fitting: each fold is held out once and scored by
        critics trained on the others, and the estimate pools all of them.
        On 25 + 25 dimensions with 5,000 samples this made the estimate both
        less biased (more training rows) and far less seed-dependent than one
        30% split (docs/science.md, section 1). Run time grows linearly with
        it. None holds out a single ``test_size`` share instead.
    test_size : float, default=0.3
        Share of the samples held out for the estimate when ``n_folds`` is
        None; ignored otherwise.
    validation_fraction : float, default=0.2
        Share of the samples not held out that is used for early stopping.
    critic_hidden_layer_sizes : tuple of int, list of tuple of int or "auto", \
            default="auto"
        The critic's layers; the first is its joint (x, z) layer. A list
        gives candidate architectures, simplest first: each is trained on the
        first fold's train part, early-stopped on one half of its validation
        part, and the first whose bound on the other half is within one
        standard error (of the paired difference) of the best candidate's is
        trained again in every fold, early-stopped on the whole validation
        part, and evaluated on the held-out fold (the one-standard-error rule;
        the result reports the choice and every candidate's validation bound).
        Candidates train together (one batched loop), each at
        ``learning_rate`` and ``weight_decay``. "auto" is ``[(32, 32), (64,
        32), (128, 32), (256, 32)]``, joint layers of growing width under a
        narrow second layer (dense high-dimensional dependence needs the
        width, not the arithmetic of an equally wide second layer), and last
        a (32, 32) critic without weight decay at 3 times the learning rate,
        for steep low-dimensional channels that decay flattens. Narrow,
        weight-decayed, averaged critics overfit less where few of many
        dimensions carry the information (docs/science.md, section 1).
    batch_size : int, default=256
        Batch size of training and of the held-out evaluation; capped at the
        size of the smallest part. A held-out batch of B rows takes B(B - 1)
        mismatched pairs.
    max_iter : int, default=200
        Maximum number of critic epochs.
    learning_rate : float, default=1e-3
        AdamW learning rate of the critics.
    n_iter_no_change : int, default=20
        Early-stopping patience of each critic, in epochs; an epoch is a pass
        over the train part or 16 batches of it, whichever is shorter. The
        validation bound is noisy: shorter patience, or a larger learning
        rate, stopped 20-dimensional channels further short of the truth
        (docs/science.md, section 1).
    weight_decay : float, default=0.5
        Decoupled (AdamW) weight decay of the critics; 0 is plain Adam. Decay
        curbs overfitting in many dimensions but flattens the steep critic
        that a low-dimensional, high-MI channel needs; "auto" therefore also
        tries an undecayed critic (docs/science.md).
    n_critics : int, default=5
        Critics per fold, trained from different seeds; the held-out bound
        uses the mean of their scores. Any critic gives a valid lower bound,
        and averaging cancels much of what each one overfits to the train
        part (in high dimensions with few samples the dominant error). Run
        time grows linearly with it.
    device : str, default="cpu"
        "auto", "cpu", "cuda", "cuda:N" or "mps".
    n_threads : int or None, default=None
        Torch CPU threads for the call; None keeps the current setting.
    n_jobs : int or None, default=None
        Worker processes (joblib) that train critics side by side: the
        candidates of the choice, then the folds, are split into ``n_jobs``
        groups, each trained in its own process with ``cpu_count // n_jobs``
        torch threads. None means 1 and -1 all CPUs (joblib's convention). A
        critic trains the same whichever group it is in, so the estimate
        changes only by float rounding. CPU only. On a 2-core machine it was
        1.02-1.14 times as fast as 2 threads (docs/performance.md).
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the critic's weights, batch order and shifts.
    verbose : int or bool, default=0
        Shows a progress bar over the critics' training epochs when positive.

    Returns
    -------
    result : MIEstimate
        ``(mi, se)``: the held-out bound in nats (the mean of the per-batch
        bounds on the held-out parts) and its standard error
        ``sd(batch bounds) / sqrt(n_batches)`` (nan if they hold a single
        batch). Its ``critic`` attribute holds the candidate evaluated
        (``sizes``, ``learning_rate``, ``weight_decay``),
        ``critic_hidden_layer_sizes`` its sizes, and ``validation_mi`` each
        candidate's validation bound (empty for a single candidate).

    Notes
    -----
    Every bound here is a *lower* bound in expectation: a small critic, too
    few samples or too short training underestimate. A bound below -1 nat
    warns (RuntimeWarning): with heavy-tailed features (Student-t with one
    degree of freedom, say) and ``scaling="standard"`` the critic can score
    mismatched held-out pairs far out of its training range, and NWJ's
    ``exp`` term then drives the estimate to large negative values. InfoNCE
    cannot exceed ``log(batch_size)``; NWJ's variance grows like ``exp(I)``,
    so above a few nats prefer more samples and larger batches, and read the
    standard error.

    Examples
    --------
    >>> import numpy as np
    >>> from skinfomax import mutual_information
    >>> rng = np.random.RandomState(0)
    >>> x = rng.randn(2000)
    >>> z = x + rng.randn(2000)                 # true I = log(2) / 2 = 0.35 nats
    >>> mi, se = mutual_information(x, z, random_state=0)   # 6-8 s on one CPU thread
    >>> bool(0.2 < mi < 0.45) and se > 0
    True

    One architecture, one critic, one split: some 40 times faster, less robust.

    >>> mi, se = mutual_information(x, z, critic_hidden_layer_sizes=(64, 64), n_critics=1,
    ...                             n_folds=None, max_iter=20, random_state=0)
    >>> bool(0.2 < mi < 0.45) and se > 0
    True
    """
    X, Z = _as_2d(X, "X"), _as_2d(Z, "Z")
    check_consistent_length(X, Z)
    candidates = _critic_candidates(critic_hidden_layer_sizes, float(learning_rate),
                                    float(weight_decay))
    n = X.shape[0]
    if n_folds is None:
        n_test, n_rest = int(np.ceil(test_size * n)), n - int(np.ceil(test_size * n))
    else:
        n_test, n_rest = n // n_folds, n - int(np.ceil(n / n_folds))
    n_valid = int(np.ceil(validation_fraction * n_rest))
    if min(n_test, n_valid // (2 if len(candidates) > 1 else 1), n_rest - n_valid) < 2:
        held_out = f"n_folds={n_folds}" if n_folds is not None else f"test_size={test_size}"
        raise ValueError(
            f"{n} samples are too few to split into train, validation and test parts of at "
            f"least 2 samples each, 4 in validation when critics are compared "
            f"({held_out}, validation_fraction={validation_fraction})."
        )
    device = resolve_device(device)
    n_jobs = effective_n_jobs(n_jobs)
    if n_jobs > 1 and device.type != "cpu":
        raise ValueError(f"n_jobs={n_jobs} runs critics in CPU worker processes; got "
                         f"device={device}: use n_jobs=None there (one batched stack "
                         "already trains every critic at once).")
    seed = seed_from(random_state)
    if n_folds is None:
        rest, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed)
        held_out = [(rest, test)]
    else:
        held_out = KFold(n_folds, shuffle=True, random_state=seed).split(X)
    folds = [_fold(X, Z, rest, test, validation_fraction, scaling, seed)
             for rest, test in held_out]
    # Learning rate and weight decay travel with each candidate.
    config = CriticConfig(
        estimator=estimator,
        batch_size=min(batch_size, n_test, n_valid, n_rest - n_valid),
        max_iter=max_iter,
        n_iter_no_change=n_iter_no_change,
    )
    with torch_threads(n_threads):
        mi, se, chosen, validation = estimate_mi(
            folds, candidates, config, seed, device, n_critics=n_critics, verbose=verbose,
            n_jobs=n_jobs,
        )
    warn_if_implausible(
        mi, estimator, "typically heavy-tailed features; scaling='quantile' maps each "
        "feature to a normal first",
    )
    return MIEstimate(mi, se, chosen, validation)


def _fold(X, Z, rest, test, validation_fraction, scaling, seed):
    """Train, validation and test parts of one fold, scaled by the train part's statistics."""
    n_valid = int(np.ceil(validation_fraction * len(rest)))
    train, valid = train_test_split(rest, test_size=n_valid, random_state=seed)
    Xs = _standardise(X[train], X[valid], X[test], scaling=scaling, seed=seed)
    Zs = _standardise(Z[train], Z[valid], Z[test], scaling=scaling, seed=seed)
    return Xs[0], Zs[0], Xs[1], Zs[1], Xs[2], Zs[2]
