""":func:`mutual_information`: the transformer's critics and bounds on any paired samples,
cross-fitted over folds.
"""

from __future__ import annotations

import math
import warnings
from collections import namedtuple
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from numpy.typing import ArrayLike
from sklearn.model_selection import KFold
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array, check_consistent_length

from ._critics import (INFONCE_BLOCK, Bound, CriticCandidate, CriticConfig, FixedCodes, MeanCritic,
                       StackedCritic, batch_bounds, fixed_batches, influence_terms, train_critics)
from ._units import InputUnits
from ._utils import (as_positive_ints, mean_and_se, numeric_array, resolve_device, seed_from,
                     spawn_seeds, split_rows, torch_threads, warn_if_implausible)

# "auto": joint layers of growing width under a narrow second layer, then one undecayed
# critic at STEEP_RATE times the learning rate (the least regularised).
AUTO_CRITICS = ((32, 32), (64, 32), (128, 32), (256, 32))
STEEP_CRITIC = (32, 32)
STEEP_RATE = 3.0


class MIEstimate(namedtuple("MIEstimate", ["mi", "se"])):
    """A mutual-information estimate in nats and its standard error.

    Unpacks as ``(mi, se)``. ``critic`` is the :class:`~skinfomax.CriticCandidate` evaluated
    on the test parts, ``critic_hidden_layer_sizes`` its layer sizes, and ``validation_mi``
    the validation bound of every candidate, keyed by candidate (empty for a single one).
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


def _critic_candidates(value, learning_rate, weight_decay):
    """The critics to try, from the ``critic_hidden_layer_sizes`` argument."""
    if isinstance(value, str):
        return (*(CriticCandidate(sizes, learning_rate, weight_decay) for sizes in AUTO_CRITICS),
                CriticCandidate(STEEP_CRITIC, STEEP_RATE * learning_rate, 0.0))
    single = as_positive_ints(value)
    if single:
        return (CriticCandidate(single, learning_rate, weight_decay),)
    candidates = [as_positive_ints(v) for v in value] if not np.isscalar(value) else [None]
    if not candidates or not all(candidates):
        raise ValueError(
            "critic_hidden_layer_sizes must be 'auto', a non-empty sequence of positive "
            "integers, or a list of such sequences (candidates chosen by validation bound), "
            f"got {value!r}.")
    # Duplicates dropped, order kept.
    return tuple(CriticCandidate(sizes, learning_rate, weight_decay)
                 for sizes in dict.fromkeys(candidates))


def _as_2d(a, name):
    a = numeric_array(check_array, a, dtype=np.float64, ensure_2d=False, input_name=name)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    elif a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got an array of shape {a.shape}.")
    return a


def _scaled(train, *others, scaling="standard", seed=0):
    """The parts in float32, in the train part's standard units (as the transformer's) or its
    ranks mapped to a standard normal."""
    if scaling == "quantile":
        qt = QuantileTransformer(n_quantiles=min(1000, train.shape[0]),
                                 output_distribution="normal", random_state=seed).fit(train)
        return [qt.transform(a).astype(np.float32) for a in (train, *others)]
    units = InputUnits.fit(train)
    return [units.standardise(a) for a in (train, *others)]


# From here on an InfoNCE call is warned of before it starts: minutes on a small CPU.
INFONCE_SLOW_SAMPLES = 10_000


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
    X: ArrayLike, Z: ArrayLike, estimator: str = "nwj", *, scaling: str = "standard",
    n_folds: int | None = 5, test_size: float = 0.3, validation_fraction: float = 0.2,
    critic_hidden_layer_sizes="auto", batch_size: int = 256, max_iter: int = 200,
    learning_rate: float = 1e-3, n_iter_no_change: int = 20, weight_decay: float = 0.5,
    n_critics: int = 5, device: str = "cpu", n_threads: int | None = None,
    n_jobs: int | None = None, random_state=None, verbose: int = 0,
) -> MIEstimate:
    """Estimate I(X; Z) in nats with a trained critic, on held-out samples.

    The samples are cross-fitted: each of ``n_folds`` folds is held out once while
    ``n_critics`` critics T(x, z) (:class:`~skinfomax.Critic`) from different seeds train on
    the others, early-stopped on a validation part. The bound of their mean score is evaluated
    on the held-out fold in fixed batches of ``batch_size``, every mismatched pair a draw from
    p(x) p(z), so every sample is scored once, by critics that never saw it. X and Z are first
    scaled with each train part's statistics (``scaling``). Why these choices, and accuracy
    against ground truth: :doc:`/science`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x) or (n_samples,)
    Z : array-like of shape (n_samples, n_features_z) or (n_samples,)
        Paired samples: row i of X goes with row i of Z.
    estimator : {"nwj", "dv", "infonce"}, default="nwj"
        The bound: NWJ (unbiased per batch, high variance at large MI), Donsker-Varadhan
        (tighter, biased by the log), InfoNCE (low variance, never above about
        ``log(batch_size)``, and warned within a nat of it). Cost and ceilings: see Notes.
    scaling : {"standard", "quantile"}, default="standard"
        Per-feature map fitted on the train part: mean 0 and sd 1, or ranks mapped to a
        standard normal, which tames heavy tails.
    n_folds : int or None, default=5
        Cross-fitting folds: a less biased, less seed-dependent estimate than one split, at
        run time linear in it. None holds out one ``test_size`` share instead.
    test_size : float, default=0.3
        Share held out when ``n_folds`` is None; ignored otherwise.
    validation_fraction : float, default=0.2
        Share of the samples not held out that is used for early stopping.
    critic_hidden_layer_sizes : tuple of int, list of tuple of int or "auto", \
            default="auto"
        The critic's layers, the first its joint (x, z) layer. A list gives candidates,
        simplest first, trained on the first fold and compared on half its validation part;
        the first within one standard error of the best is used in every fold. "auto" is
        ``[(32, 32), (64, 32), (128, 32), (256, 32)]``, then a (32, 32) critic without weight
        decay at 3 times the learning rate (for steep low-dimensional channels).
    batch_size : int, default=256
        Batch size of training and held-out evaluation, capped at the smallest part's size.
    max_iter : int, default=200
        Maximum number of critic epochs.
    learning_rate : float, default=1e-3
        AdamW learning rate of the critics.
    n_iter_no_change : int, default=20
        Early-stopping patience, in epochs of one pass over the train part or 16 batches,
        whichever is shorter; shorter patience stops high-dimensional channels further short.
    weight_decay : float, default=0.5
        AdamW weight decay of the critics (0 is Adam); it curbs overfitting in many dimensions.
    n_critics : int, default=5
        Critics per fold, from different seeds, whose mean score is evaluated (cancelling much
        of what each overfits); run time is linear in it.
    device : str, default="cpu"
        "auto", "cpu", "cuda", "cuda:N" or "mps".
    n_threads : int or None, default=None
        Torch CPU threads for the call; None: torch's setting, lowered to the cores other
        processes leave idle (as the estimator's, :ref:`threads <threads>`).
    n_jobs : int or None, default=None
        Worker processes (joblib; CPU only) training groups of candidates, then of folds, each
        with ``cpu_count // n_jobs`` threads; None means 1, -1 all CPUs. The estimate changes
        only by float rounding (:doc:`speed-ups </performance>`).
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the critics' weights, batch order and shifts.
    verbose : int or bool, default=0
        Shows a progress bar over the critics' training epochs when positive.

    Returns
    -------
    result : MIEstimate
        ``(mi, se)``: the mean of the held-out per-batch bounds and its standard error
        ``sd / sqrt(n_batches)`` (nan for one batch); the chosen critic's details as attributes.

    Notes
    -----
    Every bound is a *lower* bound in expectation; one below -1 nat warns (RuntimeWarning):
    heavy-tailed features want ``scaling="quantile"``. NWJ's variance grows like ``exp(I)``:
    above a few nats use more samples and larger batches, and read the standard error.

    Cost: every estimator scores all ``B(B - 1)`` mismatched pairs of each held-out batch. In
    training and early stopping NWJ and DV score 2 pairs per row, InfoNCE 16 (it normalises
    each row over a block of 16 rows of its batch), so InfoNCE warns (UserWarning) before it
    starts on 10,000 samples or more (:doc:`/science`, "InfoNCE's cost").

    InfoNCE's ceiling: a held-out row is normalised over the ``B`` to ``2B - 1`` rows of its
    batch (``B``: ``batch_size`` capped at the smallest part), so the estimate cannot pass
    about ``log(batch_size)``, and warns (RuntimeWarning) within a nat of it; the training
    blocks do not cap it (:doc:`/science`). "nwj" has no ceiling.

    Examples
    --------
    >>> import numpy as np
    >>> from skinfomax import mutual_information
    >>> rng = np.random.RandomState(0)
    >>> x = rng.randn(2000)
    >>> z = x + rng.randn(2000)                 # true I = log(2) / 2 = 0.35 nats
    >>> mi, se = mutual_information(x, z, random_state=0)
    >>> bool(0.2 < mi < 0.45) and se > 0
    True

    One architecture, one critic, one split: much faster, less robust.

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
            f"({held_out}, validation_fraction={validation_fraction}).")
    device = resolve_device(device)
    n_jobs = effective_n_jobs(n_jobs)
    if n_jobs > 1 and device.type != "cpu":
        raise ValueError(f"n_jobs={n_jobs} runs critics in CPU worker processes; got "
                         f"device={device}: use n_jobs=None there (one batched stack "
                         "already trains every critic at once).")
    if estimator == "infonce" and n >= INFONCE_SLOW_SAMPLES:
        warnings.warn(
            f"estimator='infonce' on {n} samples: its critics score {INFONCE_BLOCK} pairs per "
            "row where NWJ's score 2, so a call takes several times as long (measured: the "
            "science page of the docs); estimator='nwj' is the cheaper bound.",
            UserWarning, stacklevel=2)
    seed = seed_from(random_state)
    if n_folds is None:
        test, rest = split_rows(n, [n_test], seed)
        held_out = [(rest, test)]
    else:
        held_out = KFold(n_folds, shuffle=True, random_state=seed).split(X)
    folds = [_fold(X, Z, rest, test, validation_fraction, scaling, seed) for rest, test in held_out]
    # Learning rate and weight decay travel with each candidate.
    config = CriticConfig(bound=Bound(estimator, block=INFONCE_BLOCK),
                          batch_size=min(batch_size, n_test, n_valid, n_rest - n_valid),
                          max_iter=max_iter, n_iter_no_change=n_iter_no_change)
    with torch_threads(n_threads):
        mi, se, chosen, validation = estimate_mi(folds, candidates, config, seed, device,
                                                 n_critics=n_critics, verbose=verbose,
                                                 n_jobs=n_jobs)
    warn_if_implausible(
        mi, estimator, lambda: "the critics score some held-out pairs far above any they "
        "were trained on, typically with heavy-tailed features",
        "scaling='quantile' maps each feature to a normal first")
    if estimator == "infonce":
        _warn_near_infonce_ceiling(mi, config.batch_size)
    return MIEstimate(mi, se, chosen, validation)


def _warn_near_infonce_ceiling(mi, batch_size):
    """RuntimeWarning when a held-out InfoNCE bound is within a nat of ``log(batch_size)``."""
    ceiling = math.log(batch_size)
    if mi > ceiling - 1.0:
        warnings.warn(
            f"The InfoNCE estimate {mi:.3g} nats is within 1 nat of its ceiling "
            f"log(batch_size) = log({batch_size}) = {ceiling:.3g} nats, which it cannot pass: "
            "the mutual information may be much larger. estimator='nwj' has no such ceiling; "
            "a larger batch_size (and more samples) raises it.", RuntimeWarning, stacklevel=3)


def _fold(X, Z, rest, test, validation_fraction, scaling, seed):
    """Train, validation and test parts of one fold, scaled by the train part's statistics."""
    valid, train = (rest[rows] for rows in split_rows(
        len(rest), [int(np.ceil(validation_fraction * len(rest)))], seed))
    Xs = _scaled(X[train], X[valid], X[test], scaling=scaling, seed=seed)
    Zs = _scaled(Z[train], Z[valid], Z[test], scaling=scaling, seed=seed)
    return Xs[0], Zs[0], Xs[1], Zs[1], Xs[2], Zs[2]


# -- the protocol: folds, the width choice, the held-out bound ----------------------------
def one_standard_error_choice(values, terms):
    """The first candidate (simplest first) whose bound in ``values`` is within one SE (of the
    paired difference of influence ``terms``) of the best's."""
    best = max(values, key=values.get)
    for candidate in values:
        diff = terms[best] - terms[candidate]
        se = diff.std(ddof=1) / math.sqrt(diff.size) if diff.size > 1 else 0.0
        if values[best] - values[candidate] <= se:
            return candidate
    return best


def _deal(items, n_groups):
    """``items`` dealt round-robin into at most ``n_groups`` non-empty groups."""
    return [items[k::n_groups] for k in range(min(n_groups, len(items)))]


def _trained_stacks(stacks, *args):
    train_critics(stacks, *args)
    return stacks


def _train_jobs(jobs, n_jobs):
    """The stacks of every job (a :func:`train_critics` call's arguments), trained in parallel
    processes: results differ only by float rounding, whichever job a critic is in."""
    if n_jobs == 1 or len(jobs) == 1:
        return [_trained_stacks(*job) for job in jobs]
    return Parallel(n_jobs=min(n_jobs, len(jobs)))(delayed(_trained_stacks)(*job) for job in jobs)


# Row indices of one fold's parts in the stacked tensors of estimate_mi.
_FoldRows = namedtuple("_FoldRows", ["train", "valid", "test"])


def _stacked_folds(folds, device):
    """Every fold's parts in one X and one Z tensor, and each fold's rows in them."""
    X = torch.cat([torch.as_tensor(np.concatenate(f[0::2]), device=device) for f in folds])
    Z = torch.cat([torch.as_tensor(np.concatenate(f[1::2]), device=device) for f in folds])
    rows, start = [], 0
    for fold in folds:
        n_train, n_valid, n_test = (len(fold[i]) for i in (0, 2, 4))
        r = torch.arange(start, start + n_train + n_valid + n_test, device=device)
        rows.append(_FoldRows(r[:n_train], r[n_train:n_train + n_valid], r[n_train + n_valid:]))
        start += len(r)
    return X, Z, rows


def _mean_critic_bounds(stack, members, X, Z, rows, config, seed, influence):
    """All-pairs bounds of the mean critic of ``members`` on fixed batches of ``rows`` (numpy),
    and with ``influence`` each sample's influence term."""
    critic = MeanCritic(stack.select(members))
    bound = replace(config.bound, pairs="all", block=None)
    batches = fixed_batches(X[rows], FixedCodes(Z[rows]), config.batch_size, seed)
    if not influence:
        return batch_bounds(critic, batches, bound).cpu().numpy().astype(float)
    critic.train(False)
    with torch.no_grad():
        values, terms = zip(*(influence_terms(bound, critic, x[None], codes[None])
                              for x, codes in batches))
    return (torch.stack(values)[:, 0].cpu().numpy().astype(float),
            torch.cat(terms).cpu().numpy().astype(float))


def _choose(candidates, X, Z, fold, config, seed, n_members, device, verbose, n_jobs=1):
    """One :class:`CriticCandidate` picked on one fold, and every candidate's bound: they
    early-stop on half the validation part and are compared on the other (early stopping
    flatters flexible critics on its own rows)."""
    half = len(fold.valid) // 2
    stop, compare = fold.valid[:half], fold.valid[half:]
    train_seed, compare_seed, *seeds = spawn_seeds(seed, 2 + n_members)
    # One stack per candidate: padding narrow ones to the widest is slower.
    groups, jobs = _deal(candidates, n_jobs), []
    for group in groups:
        jobs.append((
            [StackedCritic.build(X.shape[1], Z.shape[1], c.sizes, seeds).to(device)
             for c in group], X, FixedCodes(Z),
            [[fold.train] * n_members] * len(group), [[stop] * n_members] * len(group),
            config, train_seed, [seeds] * len(group), verbose,
            [(c.learning_rate, c.weight_decay) for c in group]))
    stack_of = dict(zip([c for group in groups for c in group],
                        [stack for stacks in _train_jobs(jobs, n_jobs) for stack in stacks]))
    values, terms = {}, {}
    for candidate in candidates:
        batch_values, terms[candidate] = _mean_critic_bounds(
            stack_of[candidate], list(range(n_members)), X, Z, compare, config, compare_seed,
            True)
        values[candidate] = float(batch_values.mean())
    return one_standard_error_choice(values, terms), values


def estimate_mi(folds, candidates, config, seed, device, n_critics=1, verbose=0, n_jobs=1):
    """Pick a candidate on the first fold, train it in every fold (``n_critics`` members) and
    score each test part with its fold's mean critic; ``folds``: ``(X_train, Z_train, X_valid,
    Z_valid, X_test, Z_test)``, scaled float32. Returns ``(mi, se, chosen, validation bounds)``.
    """
    X, Z, rows = _stacked_folds(folds, device)
    choice_seed, train_seed, test_seed, *member_seeds = spawn_seeds(seed, 3 + len(rows) * n_critics)
    if len(candidates) == 1:
        chosen, validation = candidates[0], {}
    else:
        # One member per candidate: the choice needs a ranking, not the best estimate.
        chosen, validation = _choose(candidates, X, Z, rows[0], config, choice_seed, 1, device,
                                     verbose, n_jobs)
    # Fold f's critic k has member seed f * n_critics + k, whichever job trains it.
    groups = _deal(list(range(len(rows))), n_jobs)
    jobs = []
    for folds_of_job in groups:
        seeds = [member_seeds[f * n_critics + k] for f in folds_of_job for k in range(n_critics)]
        jobs.append((
            [StackedCritic.build(X.shape[1], Z.shape[1], chosen.sizes, seeds).to(device)], X,
            FixedCodes(Z), [[rows[f].train for f in folds_of_job for _ in range(n_critics)]],
            [[rows[f].valid for f in folds_of_job for _ in range(n_critics)]], config,
            train_seed, [seeds], verbose, [(chosen.learning_rate, chosen.weight_decay)]))
    test = []
    for folds_of_job, (stack,) in zip(groups, _train_jobs(jobs, n_jobs)):
        for i, f in enumerate(folds_of_job):
            members = list(range(i * n_critics, (i + 1) * n_critics))
            test.append(_mean_critic_bounds(stack, members, X, Z, rows[f].test, config,
                                            test_seed, False))
    return (*mean_and_se(np.concatenate(test)), chosen, validation)
