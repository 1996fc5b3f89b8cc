"""The small mechanisms written once: seeds, row blocks, early stopping."""

import numpy as np
import torch

from skinfomax import _utils as utils


def test_spawned_seeds_are_repeatable_distinct_and_not_offsets():
    seeds = utils.spawn_seeds(7, 5)
    assert seeds == utils.spawn_seeds(7, 5)
    assert len(set(seeds)) == 5
    # Not seed + k: the seeds of 7 and of 8 share no stream.
    assert not set(seeds) & set(utils.spawn_seeds(8, 5))
    assert not set(seeds) & set(range(7, 13))
    # The first children do not depend on how many are spawned (SeedSequence.spawn).
    assert utils.spawn_seeds(7, 2) == seeds[:2]
    assert all(0 <= s < 2**32 for s in seeds)


def test_host_blocks_cover_the_rows_once():
    blocks = utils.host_blocks(2 * utils.HOST_BLOCK + 5)
    assert blocks[0] == (0, utils.HOST_BLOCK) and blocks[-1][1] == 2 * utils.HOST_BLOCK + 5
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert utils.host_blocks(0) == []


def test_pair_row_blocks_keep_each_block_within_the_devices_budget():
    rows = torch.zeros(100, 3)
    budget = utils.MAX_PAIRS_PER_PASS["cpu"]
    blocks = utils.pair_row_blocks(rows, budget // 7)  # 7 rows fit
    assert [len(b) for b in blocks][:2] == [7, 7] and sum(len(b) for b in blocks) == 100
    assert len(utils.pair_row_blocks(rows, 10 * budget)) == 100  # at least one row a block


def test_early_stopping_stop_holds_members_at_their_best():
    weights = torch.zeros(3, 2)
    stopping = utils.EarlyStopping([weights], n_iter_no_change=5, tol=0.0)
    weights += 1.0
    stopping.update(torch.tensor([1.0, 1.0, 1.0]))  # best state: ones
    weights += 1.0
    stopping.stop([1])
    assert stopping.stopped.tolist() == [False, True, False]
    stopping.hold_stopped()
    np.testing.assert_array_equal(weights.numpy(), [[2, 2], [1, 1], [2, 2]])
