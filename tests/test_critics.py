"""The batched critic trainer: members as if trained alone, early stopping, progress, refit."""

import copy

import numpy as np
import pytest
import torch

from skinfomax._critics import (
    Bound,
    CachedPosterior,
    CriticConfig,
    FixedCodes,
    MeanCritic,
    SingleCritic,
    StackedCritic,
    batch_bounds,
    critic_cap_for,
    fixed_batches,
    fresh_critic,
    influence_terms,
    train_critics,
    validation_shifts,
)
from skinfomax._networks import Encoder, build_critic, build_mlp

SIZES = (16, 8)


def gaussian_pairs(n, seed=0):
    """x ~ N(0, 1), z = x + noise / 2 in float32 (I = log(5) / 2 = 0.80 nats)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    return x, x + 0.5 * torch.randn(n, 1, generator=g)


def member(stack, m):
    """Member ``m`` of a stack as a :class:`~skinfomax.Critic` (a copy of its weights)."""
    n_features, n_codes, *sizes = stack.sizes
    critic = build_critic(n_features, n_codes, sizes)
    embed_x, embed_codes, head = critic.linear_layers()
    with torch.no_grad():
        embed_x.weight.copy_(stack.x_weight[m].T)
        embed_x.bias.copy_(stack.x_bias[m, 0])
        embed_codes.weight.copy_(stack.codes_weight[m].T)
        for linear, weight, bias in zip(head, stack.head_weights, stack.head_biases):
            linear.weight.copy_(weight[m].T)
            linear.bias.copy_(bias[m, 0])
    return critic


def held_out(critic, X, Z, estimator, batch_size, pairs):
    """Per-batch held-out bounds of a stack of one on consecutive batches (numpy)."""
    batches = fixed_batches(X, FixedCodes(Z), batch_size, 0)
    return batch_bounds(critic, batches, Bound(estimator, pairs=pairs)).numpy()


def train(stack, X, Z, rows, config, member_seeds):
    """Every member trains on ``rows[m]`` = (train, valid) indices."""
    return train_critics([stack], X, FixedCodes(Z), [[r[0] for r in rows]],
                         [[r[1] for r in rows]], config, 7, [member_seeds])


def test_batched_members_equal_members_trained_alone():
    X, Z = gaussian_pairs(300)
    # Three members on different rows (as folds are), same number of rows each.
    perms = [torch.randperm(300, generator=torch.Generator().manual_seed(m)) for m in range(3)]
    rows = [(p[:200], p[200:260]) for p in perms]
    config = CriticConfig(batch_size=50, max_iter=12, n_iter_no_change=3, weight_decay=0.1)
    seeds = [11, 12, 13]
    together = StackedCritic.build(1, 1, SIZES, seeds)
    best_together = train(together, X, Z, rows, config, seeds)[0]
    for m, seed in enumerate(seeds):
        alone = StackedCritic.build(1, 1, SIZES, [seed])
        best_alone = train(alone, X, Z, [rows[m]], config, [seed])[0]
        assert best_alone[0] == best_together[m]
        for a, b in zip(member(alone, 0).parameters(), member(together, m).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        # The plain module path (SingleCritic) trains the same member the same way.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build_critic(1, 1, SIZES)
        train(SingleCritic(module), X, Z, [rows[m]], config, [seed])
        for a, b in zip(module.parameters(), member(together, m).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        test = torch.arange(260, 300)
        value = held_out(SingleCritic(module), X[test], Z[test], "nwj", 40, "all")
        stacked = held_out(MeanCritic(together.select([m])), X[test], Z[test], "nwj", 40, "all")
        np.testing.assert_allclose(value, stacked, rtol=1e-4, atol=1e-5)


def test_stopped_member_does_not_move_while_others_train():
    X, Z = gaussian_pairs(400)
    # Member 0 is validated on the channel it learns; member 1 on the mirrored
    # channel z = -x + noise, where learning only lowers the bound (DV: no
    # gain from a constant offset): it stops after its patience while member
    # 0 keeps training.
    Z_both = torch.cat([Z, Z - 2 * X])
    rows = [(torch.arange(300), torch.arange(300, 400)),
            (torch.arange(300), torch.arange(700, 800))]
    stack = StackedCritic.build(1, 1, SIZES, [0, 1])
    initial = [t.detach().clone() for t in stack.member_tensors()]
    config = CriticConfig(bound=Bound("dv"), batch_size=50, max_iter=25, n_iter_no_change=3,
                          tol=0.01)
    steps = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):  # the weights every step starts from
        steps.append([t.detach().clone() for t in stack.member_tensors()])
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        best_epochs = train(stack, torch.cat([X, X]), Z_both, rows, config, [0, 1])[0]
    finally:
        torch.optim.AdamW.step = original
    assert best_epochs[1] <= 1 and best_epochs[0] > best_epochs[1] + 2
    # Member 1 stopped after epoch best + patience (6 steps an epoch); from
    # then on every step leaves it at its best weights while member 0 moves.
    stop_step = (best_epochs[1] + config.n_iter_no_change) * 6
    final = stack.member_tensors()
    assert len(steps) > stop_step + 6
    for after in steps[stop_step:]:
        for t_after, t_best in zip(after, final):
            assert torch.equal(t_after[1], t_best[1])
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(steps[-1], steps[stop_step]))
    # Never-improved members keep their initial weights; stack ends on the best weights.
    if best_epochs[1] == 0:
        for t, t0 in zip(final, initial):
            assert torch.equal(t[1], t0[1])


def test_progress_bar_is_silent_by_default(capsys):
    X, Z = gaussian_pairs(100)
    rows = [(torch.arange(80), torch.arange(80, 100))]
    config = CriticConfig(batch_size=20, max_iter=2)
    train(StackedCritic.build(1, 1, SIZES, [0]), X, Z, rows, config, [0])
    assert capsys.readouterr().err == ""
    train_critics([StackedCritic.build(1, 1, SIZES, [0])], X, FixedCodes(Z),
                  [[rows[0][0]]], [[rows[0][1]]], config, 0, [[0]], verbose=1)
    assert "critics" in capsys.readouterr().err


def test_fresh_critic_leaves_models_unchanged_and_bounds_a_known_channel():
    # A frozen "encoder" whose posterior is z = x + N(0, 0.5^2) in one
    # dimension: I(x; z) = log(1 + 1 / 0.25) / 2 = 0.80 nats.
    encoder = Encoder(build_mlp([1]), 1, 1, 0)
    with torch.no_grad():
        encoder.head.weight.copy_(torch.tensor([[1.0], [0.0]]))
        encoder.head.bias.copy_(torch.tensor([0.0, 2 * np.log(0.5)]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        critic = build_critic(1, 1, (32, 32))
    before = [copy.deepcopy(m.state_dict()) for m in (encoder, critic)]
    X = torch.as_tensor(np.random.RandomState(0).randn(2000, 1).astype(np.float32))
    train_x, test_x = X[:1000], X[1000:]

    def held_out_values():
        fresh, batch_size = fresh_critic(critic, train_x, CachedPosterior.of(encoder, train_x, 512),
                                         bound=Bound("nwj"), batch_size=128,
                                         max_iter=60, seed=0)
        posterior = CachedPosterior.of(encoder, test_x, 512)
        return batch_bounds(SingleCritic(fresh), fixed_batches(test_x, posterior, batch_size, 1),
                            Bound("nwj", pairs="blocks")).numpy()

    values = held_out_values()
    for module, state in zip((encoder, critic), before):
        for k, v in module.state_dict().items():
            assert torch.equal(v, state[k])
    assert np.all(np.isfinite(values)) and len(values) == 1000 // 128
    assert abs(values.mean() - np.log(5) / 2) < 0.15
    np.testing.assert_array_equal(values, held_out_values())  # the seed fixes the result


def test_stacked_critic_scores_equal_its_members():
    stack = StackedCritic.build(3, 2, (8, 4, 4), [0, 1])
    x, z = torch.randn(2, 5, 3), torch.randn(2, 5, 2)
    matrix = stack.score_matrix(x, z)
    joint, shifted = stack.joint_and_shifted(x, z, [2, 3])
    for m in range(2):
        critic = member(stack, m)
        torch.testing.assert_close(matrix[m], critic.score_matrix(x[m], z[m]))
        torch.testing.assert_close(joint[m], critic(x[m], z[m]))
        torch.testing.assert_close(shifted[m], torch.cat(
            [critic.joint_and_shifted(x[m], z[m], s)[1] for s in (2, 3)]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        assert torch.equal(build_critic(3, 2, (8, 4, 4)).embed_x.weight,
                           member(stack, 1).embed_x.weight)
    mean = MeanCritic(stack).score_matrix(x[:1], z[:1])[0]
    expected = torch.stack([member(stack, m).score_matrix(x[0], z[0]) for m in range(2)]).mean(0)
    torch.testing.assert_close(mean, expected)


@pytest.mark.parametrize("estimator", ["dv", "infonce"])
def test_other_bounds_train(estimator):
    X, Z = gaussian_pairs(600)
    rows = [(torch.arange(400), torch.arange(400, 500))]
    stack = StackedCritic.build(1, 1, (32, 32), [0])
    train(stack, X, Z, rows, CriticConfig(bound=Bound(estimator), batch_size=50, max_iter=30), [0])
    rows = torch.arange(500, 600)
    value = held_out(SingleCritic(member(stack, 0)), X[rows], Z[rows], estimator, 50, "all").mean()
    assert 0.5 < value < np.log(5) / 2 + 0.15


def test_each_stack_trains_at_its_own_learning_rate_and_decay():
    X, Z = gaussian_pairs(200)
    train_rows, valid_rows = torch.arange(150), torch.arange(150, 200)
    config = CriticConfig(batch_size=50, max_iter=3, tol=-1e9)  # every epoch "improves"
    frozen, moving, decayed = (StackedCritic.build(1, 1, SIZES, [0]) for _ in range(3))
    initial = [t.detach().clone() for t in frozen.member_tensors()]
    train_critics([frozen, moving, decayed], X, FixedCodes(Z), [[train_rows]] * 3,
                  [[valid_rows]] * 3, config, 0, [[0]] * 3,
                  rates=[(0.0, 0.0), (1e-2, 0.0), (1e-2, 5.0)])
    for t, t0 in zip(frozen.member_tensors(), initial):
        assert torch.equal(t, t0)  # learning rate 0: not a bit moved
    # The moving stack trained exactly as it would alone with that rate.
    alone = StackedCritic.build(1, 1, SIZES, [0])
    train_critics([alone], X, FixedCodes(Z), [[train_rows]], [[valid_rows]],
                  CriticConfig(batch_size=50, max_iter=3, tol=-1e9, learning_rate=1e-2), 0,
                  [[0]])
    for a, b in zip(alone.member_tensors(), moving.member_tensors()):
        torch.testing.assert_close(a, b)
    # Decay (lr * wd = 0.05 a step, 9 steps) shrinks the weights well below Adam's.
    norm = lambda stack: sum(float(p.detach().norm()) for p in stack.parameters())
    assert norm(decayed) < 0.8 * norm(moving)


def test_score_matrices_in_small_row_blocks_equal_one_pass(monkeypatch):
    from skinfomax import _utils as utils

    stack = StackedCritic.build(3, 2, (8, 4), [0, 1, 2])
    x, z = torch.randn(3, 9, 3), torch.randn(3, 7, 2)
    single = SingleCritic(member(stack, 1))
    whole, whole_single = stack.score_matrix(x, z), single.score_matrix(x[1:2], z[1:2])
    joint, shifted = stack.joint_and_shifted(x, x[:, :, :2], [2, 5])
    monkeypatch.setattr(utils, "MAX_PAIRS_PER_PASS", {"cpu": 40})  # 1-2 rows a block
    torch.testing.assert_close(stack.score_matrix(x, z), whole)
    torch.testing.assert_close(single.score_matrix(x[1:2], z[1:2]), whole_single)
    blocked = stack.joint_and_shifted(x, x[:, :, :2], [2, 5])
    torch.testing.assert_close(blocked[0], joint)
    torch.testing.assert_close(blocked[1], shifted)
    assert whole.shape == (3, 9, 7) and shifted.shape == (3, 18)
    for m in range(3):  # and each equals its member's own pairs, computed one by one
        critic = member(stack, m)
        expected = torch.stack([torch.stack([critic(x[m, i:i + 1], z[m, j:j + 1])[0]
                                             for j in range(7)]) for i in range(9)])
        torch.testing.assert_close(whole[m], expected)
        codes = x[m, :, :2]
        torch.testing.assert_close(joint[m], critic(x[m], codes))
        torch.testing.assert_close(  # shift-major: every row with codes 2 on, then 5 on
            shifted[m], torch.cat([critic(x[m], codes.roll(-s, 0)) for s in (2, 5)]))


@pytest.mark.parametrize("n_valid, shifts", [
    (160, 4),    # 4096 / 160 = 25.6: capped at 4 (the 2,000-sample width choice)
    (800, 4),    # 5.12: capped (n = 5,000, the ground-truth tables)
    (1600, 3),   # 2.56 -> 3
    (2048, 2),   # exactly 2
    (3200, 1),   # 1.28 -> 1 (n = 20,000; rounding up gave 2)
    (50000, 1),  # never below one shift
])
def test_validation_shifts_aim_at_the_nearest_whole_number_of_pairings(n_valid, shifts):
    assert validation_shifts(n_valid) == shifts


# -- the one bound function, against hand computation ---------------------------------
class TableCritic:
    """A stack of critics given as tables: x and codes are row numbers, T = table[m, x, code]."""

    def __init__(self, table):
        self.table, self.n_members = table, table.shape[0]

    def _rows(self, t):
        return t[..., 0].long()

    def score_matrix(self, x, codes):
        m = torch.arange(self.n_members)[:, None, None]
        return self.table[m, self._rows(x)[:, :, None], self._rows(codes)[:, None, :]]

    def joint_and_shifted(self, x, codes, shifts):
        m = torch.arange(self.n_members)[:, None]
        i, c = self._rows(x), self._rows(codes)
        joint = self.table[m, i, c]
        return joint, torch.cat([self.table[m, i, c.roll(-s, 1)] for s in shifts], dim=1)


def _table(n_members=2, b=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(n_members, b, b, generator=g) + 2.0 * torch.eye(b)
    rows = torch.arange(b, dtype=torch.float32)[None, :, None].expand(n_members, b, 1)
    return TableCritic(table), table.numpy().astype(np.float64), rows


def _nwj(joint, marginal):
    return joint.mean() - np.exp(marginal - 1.0).mean()


def _dv(joint, marginal):
    return joint.mean() - np.log(np.exp(marginal).mean())


@pytest.mark.parametrize("estimator, formula", [("nwj", _nwj), ("dv", _dv)])
def test_bound_pairs_are_the_documented_marginal_samples(estimator, formula):
    critic, T, rows = _table()
    b = T.shape[1]
    off = ~np.eye(b, dtype=bool)
    block = np.zeros((b, b), dtype=bool)  # two blocks of 16 rows: PAIR_BLOCK
    block[:16, :16] = block[16:, 16:] = True
    for m in range(2):
        joint = np.diag(T[m])
        expected = {
            "all": formula(joint, T[m][off]),
            "blocks": formula(joint, T[m][off & block]),
            "shift": formula(joint, np.concatenate(
                [T[m][np.arange(b), (np.arange(b) + s) % b] for s in (3, 7)])),
        }
        for pairs, value in expected.items():
            got = Bound(estimator, pairs=pairs)(critic, rows, rows, shifts=(3, 7))
            assert got.shape == (2,)
            np.testing.assert_allclose(float(got[m]), value, rtol=1e-5, atol=1e-5)


def test_infonce_normalises_each_row_over_its_batch():
    critic, T, rows = _table(n_members=1, b=32)
    t = T[0]

    def infonce(s):
        return np.mean(np.diag(s) - np.log(np.exp(s).mean(axis=1)))

    whole = infonce(t)
    halves = (infonce(t[:16, :16]) + infonce(t[16:, 16:])) / 2
    for pairs in ("shift", "blocks", "all"):  # pairs does not change InfoNCE
        np.testing.assert_allclose(float(Bound("infonce", pairs=pairs)(critic, rows, rows)[0]),
                                   whole, rtol=1e-5)
    np.testing.assert_allclose(float(Bound("infonce", block=16)(critic, rows, rows)[0]), halves,
                               rtol=1e-5)
    assert halves <= np.log(16) and whole <= np.log(32)  # capped by the rows normalised over


def test_blocked_infonce_is_hand_computed_over_each_block():
    # batch=2 splits 5 rows into near-equal blocks of at least 2: rows 0-2 and rows 3-4.
    # The large scores outside the blocks (3, 2, 4, 9) must not enter.
    T = np.array([[2.0, 0.5, -1.0, 0.0, 3.0],
                  [0.0, 1.0, 0.5, 2.0, 0.0],
                  [1.0, -0.5, 1.5, 0.0, 0.0],
                  [4.0, 0.0, 0.0, 0.5, -1.0],
                  [0.0, 9.0, 0.0, 1.0, 2.0]])
    r0 = 2.0 - np.log((np.exp(2.0) + np.exp(0.5) + np.exp(-1.0)) / 3)
    r1 = 1.0 - np.log((np.exp(0.0) + np.exp(1.0) + np.exp(0.5)) / 3)
    r2 = 1.5 - np.log((np.exp(1.0) + np.exp(-0.5) + np.exp(1.5)) / 3)
    r3 = 0.5 - np.log((np.exp(0.5) + np.exp(-1.0)) / 2)
    r4 = 2.0 - np.log((np.exp(1.0) + np.exp(2.0)) / 2)
    expected = ((r0 + r1 + r2) / 3 + (r3 + r4) / 2) / 2  # the mean of the blocks' bounds
    critic = TableCritic(torch.tensor(T, dtype=torch.float32)[None])
    rows = torch.arange(5, dtype=torch.float32)[None, :, None]
    got = float(Bound("infonce", block=2)(critic, rows, rows)[0])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got <= (np.log(3) + np.log(2)) / 2  # each block capped at the log of its rows
    assert not np.isclose(got, float(Bound("infonce")(critic, rows, rows)[0]))


def test_trainer_normalises_infonce_over_blocks_of_infonce_block_rows(monkeypatch):
    rows_seen = []
    score_matrix = StackedCritic.score_matrix

    def recorded(self, x, codes):
        rows_seen.append(x.shape[1])
        return score_matrix(self, x, codes)

    monkeypatch.setattr(StackedCritic, "score_matrix", recorded)
    X, Z = gaussian_pairs(300)
    rows = [(torch.arange(200), torch.arange(200, 300))]
    # Batches of 50, 100 validation rows: blocks of 8 or 9 rows (near-equal, none smaller);
    # without blocks, whole batches of 50 (the validation rows in two).
    for block, sizes in ((8, {8, 9}), (None, {50})):
        rows_seen.clear()
        config = CriticConfig(bound=Bound("infonce", block=block), batch_size=50, max_iter=2)
        train(StackedCritic.build(1, 1, SIZES, [0]), X, Z, rows, config, [0])
        assert set(rows_seen) == sizes


def test_influence_terms_average_to_the_bound():
    critic, T, rows = _table(n_members=1)
    for estimator in ("nwj", "infonce"):
        for pairs in ("shift", "all"):
            value, terms = influence_terms(Bound(estimator, pairs=pairs), critic, rows, rows,
                                           shifts=(5,))
            np.testing.assert_allclose(float(terms.mean()), float(value[0]), rtol=1e-5,
                                       atol=1e-6)
    with pytest.raises(ValueError, match="blocks"):
        influence_terms(Bound("nwj", pairs="blocks"), critic, rows, rows)


# -- the trainer's conventions: divergence and Ctrl-C, as the engine's -------------------
def test_a_diverged_member_keeps_its_best_weights_and_is_named(recwarn):
    X, Z = gaussian_pairs(300)
    Z = Z.clone()
    Z[250:] = float("nan")  # member 1 validates on these rows: its bound is NaN at once
    stack = StackedCritic.build(1, 1, SIZES, [0, 1])
    initial = [t.detach().clone() for t in stack.member_tensors()]
    rows = [(torch.arange(200), torch.arange(200, 250)), (torch.arange(200), torch.arange(250, 300))]
    with pytest.warns(RuntimeWarning, match=r"1 critic\(s\) diverged \(stack 0 member 1 in epoch 1\)"):
        best = train(stack, X, Z, rows, CriticConfig(batch_size=50, max_iter=5), [0, 1])[0]
    assert best[1] == 0 and best[0] > 0
    for t, t0 in zip(stack.member_tensors(), initial):
        assert torch.equal(t[1], t0[1])  # never improved: its initial weights
        assert not torch.equal(t[0], t0[0])  # the other member trained on


def test_ctrl_c_stops_the_trainer_with_every_member_at_its_best():
    import _thread

    X, Z = gaussian_pairs(300)

    class InterruptingCodes(FixedCodes):
        calls = 0

        def __call__(self, x, idx, noise):
            self.calls += 1
            if self.calls == 2:  # the second training batch of the first epoch
                _thread.interrupt_main()
            return super().__call__(x, idx, noise)

    stack = StackedCritic.build(1, 1, SIZES, [0])
    initial = [t.detach().clone() for t in stack.member_tensors()]
    source = InterruptingCodes(Z)
    with pytest.warns(RuntimeWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        train_critics([stack], X, source, [[torch.arange(250)]], [[torch.arange(250, 300)]],
                      CriticConfig(batch_size=50, max_iter=5), 0, [[0]])
    assert source.calls == 2  # stopped at the end of that step: no further batch, no validation
    for t, t0 in zip(stack.member_tensors(), initial):
        assert torch.equal(t, t0)  # no epoch validated: the best weights are the initial ones


# -- the cap on the transformer's critic ---------------------------------------------------
def test_capped_critic_lets_one_pair_lower_a_batch_bound_by_at_most_one_nat():
    b = 128
    cap = critic_cap_for(b)
    assert cap == pytest.approx(1 + np.log(b))
    critic, _, rows = _table(n_members=1, b=b)
    rows = rows[:1]
    capped_bound = Bound("nwj", cap)
    clean = float(capped_bound(critic, rows, rows)[0])
    critic.table[0, 5, 6] = 80.0  # one shifted pair (row 5 with code 6) scored absurdly high
    uncapped = float(Bound("nwj")(critic, rows, rows)[0])
    capped = float(capped_bound(critic, rows, rows)[0])
    assert uncapped < -1e6  # without the cap the one pair wrecks the batch
    # exp(cap - 1) / B = 1: at most one nat lower (the pair's old term was tiny).
    assert clean - 1.0 - 1e-4 <= capped < clean
    # The capped critic's bound is NWJ of the capped outputs, by hand.
    t = critic.table[0].double().numpy()
    t = cap - np.log1p(np.exp(cap - t))
    joint, shifted = np.diag(t), t[np.arange(b), (np.arange(b) + 1) % b]
    np.testing.assert_allclose(capped, joint.mean() - np.exp(shifted - 1).mean(), rtol=1e-5)


def test_a_step_budget_trains_the_whole_epochs_that_fit_in_it(monkeypatch):
    # 1,200 rows: the first fifth early-stops, 960 train in batches of 10 and epochs of at
    # least 16 batches: 960 // 160 = 6 epochs of 160 rows, 16 steps each. A budget of 50
    # steps is 3 whole epochs, 48 steps (no early stop: 10 epochs of patience); without a
    # budget, max_iter=5 gives 80.
    X, Z = gaussian_pairs(1200)
    steps = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step",
                        lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    for budget, expected in ((50, 48), (None, 80)):
        steps.clear()
        fresh_critic(build_critic(1, 1, SIZES), X, FixedCodes(Z), bound=Bound("nwj"),
                     batch_size=10, max_iter=5, max_steps=budget, seed=0)
        assert len(steps) == expected
