"""mutual_information against closed-form linear-Gaussian channels, and its input checks."""

import warnings

import numpy as np
import pytest

from skinfomax import mutual_information

# One plain critic and one held-out split keep these checks fast; the
# defaults' accuracy is benchmarked.
FAST = dict(max_iter=30, critic_hidden_layer_sizes=(64, 64), n_critics=1, weight_decay=0.0,
            n_folds=None, random_state=0, n_threads=1)


def linear_gaussian(d, mi, n, seed=0):
    """x ~ N(0, I_d), z = x + n with I(x; z) = d/2 log(1 + 1/s^2) = mi exactly."""
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    return x, x + np.sqrt(1.0 / np.expm1(2.0 * mi / d)) * rng.randn(n, d)


# Tolerance: 0.15 nats absolute (30% at 0.5 nats, 15% at 1 nat) with 3,000
# samples; the benchmark (benchmarks/studies/ground_truth.py) covers d 1-20, 0.1-5 nats.
@pytest.mark.parametrize("estimator", ["nwj", "dv"])
@pytest.mark.parametrize("d, truth", [(1, 0.5), (2, 1.0)])
def test_linear_gaussian_ground_truth(estimator, d, truth):
    x, z = linear_gaussian(d, truth, 3000)
    mi, se = mutual_information(x, z, estimator, **FAST)
    assert abs(mi - truth) < 0.15
    assert 0 < se < 0.15


def test_quantile_scaling_is_invariant_to_heavy_tailed_monotone_maps():
    x, z = linear_gaussian(1, 0.5, 3000)
    # sinh(4 x) is monotone (MI unchanged) with tails out to ~1e5.
    mi, _ = mutual_information(np.sinh(4 * x), z, scaling="quantile", **FAST)
    assert abs(mi - 0.5) < 0.15


def test_independent_samples_give_about_zero():
    rng = np.random.RandomState(1)
    mi, se = mutual_information(rng.randn(2000, 3), rng.randn(2000, 2), **FAST)
    assert abs(mi) < 0.05 + 2 * se


def test_infonce_capped_at_log_batch_size():
    x, z = linear_gaussian(2, 5.0, 600)
    mi, _ = mutual_information(x, z, "infonce", batch_size=16, **{**FAST, "max_iter": 5})
    # 180 held-out rows in 180 // 16 = 11 batches of 16 or 17: the cap is log 17, not log 16.
    assert 0.5 < mi <= np.log(17) + 1e-6


def correlated_gaussian(n, rho=0.8, seed=0):
    """x ~ N(0, I_5), z_k = rho x_k + sqrt(1 - rho^2) n_k for k = 1, 2: I = -log(1 - rho^2)."""
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 5)
    return x, rho * x[:, :2] + np.sqrt(1 - rho ** 2) * rng.randn(n, 2), -np.log(1 - rho ** 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_infonce_ground_truth_in_a_few_hundred_rows(seed):
    x, z, truth = correlated_gaussian(800, seed=seed)  # 1.022 nats
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # far below the ceiling: no warning
        mi, se = mutual_information(x, z, "infonce", **{**FAST, "max_iter": 60,
                                                       "random_state": seed})
    # A lower bound: 0.82-0.90 nats at seeds 0-4 (a (64, 64) critic, 560 training rows).
    assert truth - 0.3 < mi < truth + 0.1
    assert 0 < se < 0.2


def test_infonce_costs_a_few_times_nwj_not_a_batch_squared(monkeypatch):
    """Critic pair evaluations of one call: InfoNCE trains on blocks of INFONCE_BLOCK rows
    (B * 16 pairs a step, against NWJ's 2 B); normalising over whole training batches
    cost 22 times NWJ's here (B = 84).
    """
    from skinfomax._critics import StackedCritic

    pairs = {}
    score_matrix, joint_and_shifted = StackedCritic.score_matrix, StackedCritic.joint_and_shifted

    def counted_matrix(self, x, codes):
        pairs["n"] += x.shape[0] * x.shape[1] * codes.shape[1]
        return score_matrix(self, x, codes)

    def counted_shifts(self, x, codes, shifts):
        pairs["n"] += x.shape[0] * x.shape[1] * (1 + len(shifts))
        return joint_and_shifted(self, x, codes, shifts)

    monkeypatch.setattr(StackedCritic, "score_matrix", counted_matrix)
    monkeypatch.setattr(StackedCritic, "joint_and_shifted", counted_shifts)
    x, z, _ = correlated_gaussian(600)
    counts = {}
    for estimator in ("nwj", "infonce"):
        pairs["n"] = 0
        mutual_information(x, z, estimator, **FAST)
        counts[estimator] = pairs["n"]
    assert counts["infonce"] < 6 * counts["nwj"]


def test_infonce_near_its_ceiling_warns_and_names_the_alternative():
    x, z = linear_gaussian(2, 5.0, 600)
    with pytest.warns(RuntimeWarning, match=r"ceiling log\(batch_size\) = log\(16\).*'nwj'"):
        mi, _ = mutual_information(x, z, "infonce", batch_size=16, **FAST)
    assert np.log(16) - 1 < mi <= np.log(17) + 1e-6


def test_repeatable_one_and_two_dimensional_inputs():
    x, z = linear_gaussian(1, 0.5, 800)
    first = mutual_information(x[:, 0], z, **{**FAST, "max_iter": 3})
    assert first == mutual_information(x, z[:, 0], **{**FAST, "max_iter": 3})
    assert first._fields == ("mi", "se")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(Z=np.zeros((99, 1))), "inconsistent numbers of samples"),
        (dict(estimator="mine"), "estimator"),
        (dict(scaling="robust"), "scaling"),
        (dict(batch_size=1), "batch_size"),
        (dict(test_size=1.5), "test_size"),
        (dict(n_folds=1), "n_folds"),
        (dict(X=np.zeros((12, 1)), Z=np.zeros((12, 1)), n_folds=6), "n_folds=6"),
        (dict(critic_hidden_layer_sizes=()), "critic_hidden_layer_sizes"),
        (dict(critic_hidden_layer_sizes=(8, 0)), "critic_hidden_layer_sizes"),
        (dict(critic_hidden_layer_sizes=[(8,), (8, "a")]), "list of such sequences"),
        (dict(X=np.full((100, 1), np.nan)), "NaN"),
        (dict(X=np.zeros((5, 1)), Z=np.zeros((5, 1))), "too few"),
        (dict(X=np.zeros((100, 2, 2))), "dim 3"),
        (dict(device="tpu"), "tpu"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    rng = np.random.RandomState(0)
    args = dict(X=rng.randn(100, 1), Z=rng.randn(100, 1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mutual_information(**args)


def test_mean_critic_averages_scores_and_weight_decay_uses_adamw():
    import torch

    from skinfomax._critics import (
        CriticConfig,
        FixedCodes,
        MeanCritic,
        StackedCritic,
        train_critics,
    )
    from skinfomax._networks import build_critic
    from skinfomax._utils import seeded

    critics = []
    for seed in range(3):
        with seeded(seed):
            critics.append(build_critic(3, 2, (8, 8)))
    x, z = torch.randn(10, 3), torch.randn(10, 2)
    mean_critic = MeanCritic(StackedCritic.from_critics(critics))
    mean = torch.stack([c.score_matrix(x, z) for c in critics]).mean(0)
    torch.testing.assert_close(mean_critic.score_matrix(x[None], z[None])[0], mean)
    joint, shifted = mean_critic.joint_and_shifted(x[None], z[None], [3])
    torch.testing.assert_close(joint[0], mean.diagonal())
    torch.testing.assert_close(shifted[0], mean[torch.arange(10), (torch.arange(10) + 3) % 10])
    # Decay shrinks the weights of a critic that sees no signal (lr * wd = 0.5
    # a step); patience longer than the run, so no early-stopping restore.
    stack = StackedCritic.build(3, 2, (8, 8), [0])
    norm = sum(p.norm() for p in stack.parameters())
    rows = torch.arange(10)
    train_critics([stack], x, FixedCodes(z), [[rows]], [[rows]],
                  CriticConfig(batch_size=10, max_iter=5, learning_rate=1e-3,
                               weight_decay=500.0, n_iter_no_change=10, tol=-1e9), 0, [[0]])
    assert sum(p.norm() for p in stack.parameters()) < 0.5 * norm


def test_more_critics_change_the_estimate_but_one_reproduces_itself():
    x, z = linear_gaussian(1, 0.5, 1000)
    kw = {**FAST, "max_iter": 3}
    kw.pop("n_critics")
    one = mutual_information(x, z, n_critics=1, **kw)
    assert one == mutual_information(x, z, n_critics=1, **kw)
    assert one != mutual_information(x, z, n_critics=2, **kw)


def test_one_standard_error_rule_prefers_the_simplest_indistinguishable_candidate():
    from skinfomax._information import one_standard_error_choice

    rng = np.random.RandomState(0)
    base, noise = rng.randn(400), rng.randn(400)
    noise = 0.5 * (noise - noise.mean()) / noise.std()
    terms = {"small": base, "large": base + 0.02 + noise}
    # The large critic is 0.02 better on average but the paired SE is ~0.025.
    values = {k: float(v.mean()) for k, v in terms.items()}
    assert values["large"] > values["small"]
    assert one_standard_error_choice(values, terms) == "small"
    # A clear gain (0.2 against the same SE) picks the larger critic.
    terms["large"] = base + 0.2 + noise
    values = {k: float(v.mean()) for k, v in terms.items()}
    assert one_standard_error_choice(values, terms) == "large"


def test_candidate_critics_are_chosen_on_validation_and_reported():
    import pickle

    x, z = linear_gaussian(2, 1.0, 3000)
    kw = {**FAST, "n_critics": 1}
    del kw["critic_hidden_layer_sizes"]
    candidates = [(2, 2), (64, 64)]
    result = mutual_information(x, z, critic_hidden_layer_sizes=candidates, **kw)
    validation = {c.sizes: v for c, v in result.validation_mi.items()}
    assert set(validation) == set(candidates)
    assert {(c.learning_rate, c.weight_decay) for c in result.validation_mi} == {(1e-3, 0.0)}
    # A 2-unit critic cannot fit a 2-D Gaussian channel; validation sees it.
    assert validation[(64, 64)] > validation[(2, 2)] + 0.1
    assert result.critic_hidden_layer_sizes == (64, 64) == result.critic.sizes
    assert abs(result.mi - 1.0) < 0.15
    # The chosen width is refitted as a single architecture would be.
    alone = mutual_information(x, z, critic_hidden_layer_sizes=(64, 64), **kw)
    assert (result.mi, result.se) == (alone.mi, alone.se)
    assert alone.validation_mi == {} and alone.critic_hidden_layer_sizes == (64, 64)
    again = pickle.loads(pickle.dumps(result))
    assert again == result and again.validation_mi == result.validation_mi


def test_cross_fitting_scores_every_sample_once_with_unseen_critics(monkeypatch):
    from skinfomax import _information as information

    x, z = linear_gaussian(1, 0.5, 1500)
    splits = []
    real = information._fold

    def spy(X, Z, rest, test, *args):
        splits.append((rest, test))
        return real(X, Z, rest, test, *args)

    monkeypatch.setattr(information, "_fold", spy)
    kw = {**FAST, "n_folds": 3}
    mi, se = mutual_information(x, z, **kw)
    assert abs(mi - 0.5) < 0.15 and 0 < se < 0.1
    # Three held-out parts of 500 rows partition the samples; each fold's
    # critics are fitted on the other rows only.
    assert len(splits) == 3
    assert np.array_equal(np.sort(np.concatenate([t for _, t in splits])), np.arange(1500))
    for rest, test in splits:
        assert len(test) == 500 and not set(rest) & set(test)
        assert len(rest) + len(test) == 1500
    assert mutual_information(x, z, **kw) == (mi, se)


def test_implausibly_negative_bound_warns_and_points_at_quantile_scaling(monkeypatch):
    from skinfomax import _information as information
    from skinfomax._critics import CriticCandidate

    x, z = linear_gaussian(1, 0.5, 400)
    critic = CriticCandidate((64, 64), 1e-3, 0.0)
    monkeypatch.setattr(information, "estimate_mi",
                        lambda *args, **kwargs: (-3e14, 3e14, critic, {}))
    with pytest.warns(RuntimeWarning, match="scaling='quantile'"):
        mi, se = mutual_information(x, z, **FAST)
    assert (mi, se) == (-3e14, 3e14)
    monkeypatch.setattr(information, "estimate_mi",
                        lambda *args, **kwargs: (-0.2, 0.1, critic, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mutual_information(x, z, **FAST)


def test_callers_float64_default_changes_nothing_and_is_restored():
    import torch

    x, z = linear_gaussian(1, 0.5, 300)
    kw = {**FAST, "max_iter": 2}
    expected = mutual_information(x, z, **kw)
    torch.set_default_dtype(torch.float64)
    try:
        assert mutual_information(x, z, **kw) == expected
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_auto_tries_the_widths_and_an_undecayed_critic_at_their_own_rates():
    x, z = linear_gaussian(2, 1.0, 600)
    kw = {**FAST, "max_iter": 2, "n_critics": 1, "learning_rate": 2e-3, "weight_decay": 0.25}
    del kw["critic_hidden_layer_sizes"]
    result = mutual_information(x, z, critic_hidden_layer_sizes="auto", **kw)
    tried = {(c.sizes[0], c.learning_rate, c.weight_decay) for c in result.validation_mi}
    assert {(w, 2e-3, 0.25) for w in (32, 64, 128, 256)} < tried
    assert (32, 6e-3, 0.0) in tried and len(tried) == 5
    assert result.critic in result.validation_mi


@pytest.mark.slow
def test_worker_processes_train_the_same_critics():
    x, z = linear_gaussian(2, 1.0, 600)
    kw = dict(max_iter=5, n_critics=2, n_folds=3, n_threads=1, random_state=0)
    one = mutual_information(x, z, **kw)
    two = mutual_information(x, z, n_jobs=2, **kw)
    assert two.critic == one.critic and list(two.validation_mi) == list(one.validation_mi)
    np.testing.assert_allclose(list(two.validation_mi.values()),
                               list(one.validation_mi.values()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([two.mi, two.se], [one.mi, one.se], rtol=1e-4, atol=1e-5)


def test_infonce_warns_of_its_cost_before_a_long_call():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10_000, 1))
    Z = X + rng.standard_normal((10_000, 1))
    small = dict(n_folds=None, max_iter=1, n_critics=1, critic_hidden_layer_sizes=(8,),
                 random_state=0, n_threads=1)
    with pytest.warns(UserWarning, match="on 10000 samples.*estimator='nwj' is the cheaper"):
        mutual_information(X, Z, estimator="infonce", **small)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        mutual_information(X[:9_999], Z[:9_999], estimator="infonce", **small)
        mutual_information(X, Z, estimator="nwj", **small)
