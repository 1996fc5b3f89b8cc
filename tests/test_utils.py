"""The small mechanisms written once: seeds, row blocks, early stopping."""

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
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


@pytest.mark.parametrize("busy, current, expected", [(0, 2, 2), (1, 2, 1), (5, 2, 1), (0, 1, 1),
                                                     (5, 1, 1)])
def test_default_threads_leave_the_busy_cores(monkeypatch, busy, current, expected):
    monkeypatch.setattr(utils, "_busy_elsewhere", lambda: busy)
    monkeypatch.setattr(utils.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with utils.torch_threads(current):
        assert utils.default_threads() == expected  # never above the caller's setting
        with utils.torch_threads(None):
            assert torch.get_num_threads() == expected
        assert torch.get_num_threads() == current  # restored


def test_default_threads_keep_torch_setting_where_load_is_unknown(monkeypatch):
    monkeypatch.setattr(utils, "_busy_elsewhere", lambda: None)
    assert utils.default_threads() == torch.get_num_threads()


@pytest.mark.parametrize("reads, busy", [([1, 1, 1, 1, 1], 1), ([2, 1, 2, 2, 2], 1),
                                         ([1, 1, 0, 1, 1], 0), ([None], None)])
def test_busy_means_running_at_every_look_and_is_reused_for_a_second(monkeypatch, reads, busy):
    looks = iter(reads)
    monkeypatch.setattr(utils, "_running_elsewhere", lambda: next(looks))
    monkeypatch.setattr(utils, "_LOAD_READ", {"at": -math.inf, "busy": None})
    assert utils._busy_elsewhere(interval=0) == busy
    assert utils._busy_elsewhere(interval=0) == busy  # not read again: the looks are used up


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="reads Linux's /proc")
def test_running_elsewhere_sees_a_busy_process():
    idle = min(utils._running_elsewhere() for _ in range(5))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        seen = [utils._running_elsewhere() for _ in range(20)]
    finally:
        busy.kill()
    assert sum(s >= idle + 1 for s in seen) >= 15  # the loop runs nearly all the time


def test_relative_early_stopping_measures_gains_against_the_first_epoch():
    # Losses 10, 6, 5.95, 5.5, 5.45, 5.44: after epoch 2 the best has dropped 4 below the first,
    # so an epoch improves only by beating the best by tol * 4 = 0.4 (then 0.45 after epoch 4).
    stopping = utils.EarlyStopping([], n_iter_no_change=2, tol=0.1, relative=True)
    improved = [bool(stopping.update(torch.tensor([-loss]))) for loss in
                (10.0, 6.0, 5.95, 5.5, 5.45, 5.44)]
    assert improved == [True, True, False, True, False, False]
    assert bool(stopping.stopped) and int(stopping.best_epoch) == 4


def test_an_epoch_that_may_not_stop_keeps_the_count_one_short():
    stopping = utils.EarlyStopping([], n_iter_no_change=2, tol=0.0)
    for score in (1.0, 0.0, 0.0, 0.0):
        stopping.update(torch.tensor([score]), may_stop=False)
    assert not bool(stopping.stopped) and int(stopping.stale) == 1
    stopping.update(torch.tensor([0.0]))
    assert bool(stopping.stopped)


def test_torch_threads_gives_the_block_its_count(monkeypatch):
    monkeypatch.setattr(utils, "_busy_elsewhere", lambda: 5)  # every core busy: 1 thread
    with utils.torch_threads(None) as threads:
        assert threads == torch.get_num_threads() == 1


def test_one_thread_is_not_lowered_so_the_load_is_not_read(monkeypatch):
    def unread():
        raise AssertionError("the load was read")
    monkeypatch.setattr(utils, "_busy_elsewhere", unread)
    with utils.torch_threads(1):
        assert utils.default_threads() == 1
