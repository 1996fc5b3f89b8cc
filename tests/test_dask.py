"""Grid search on a dask.distributed cluster, and partial_fit over dask arrays.

One LocalCluster of 2 worker processes serves the module; the worker-kill test
runs last because it leaves the cluster with a restarted worker.
"""

import os
import signal
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dask_array = pytest.importorskip("dask.array")
pytest.importorskip("dask_ml")
psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow  # a cluster of worker processes

import joblib  # noqa: E402
import torch  # noqa: E402
from dask_ml.wrappers import Incremental  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from skinfomax import InfoMaxVAETransformer  # noqa: E402

GRID = {"alpha": [0.0, 5.0], "beta": [0.5, 1.0], "n_components": [2, 3]}
SMALL = dict(hidden_layer_sizes=(16,), critic_hidden_layer_sizes=(16,), random_state=0)


def search(max_iter):
    return GridSearchCV(InfoMaxVAETransformer(max_iter=max_iter, **SMALL), GRID, cv=3)


def cluster_processes(known):
    """Running child processes of this one that are not in ``known``."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            # multiprocessing's resource tracker serves this interpreter, not the cluster
            if (process.pid not in known and process.status() != psutil.STATUS_ZOMBIE
                    and "resource_tracker" not in " ".join(process.cmdline())):
                found.append(process)
        except psutil.NoSuchProcess:  # ended while we looked
            pass
    return found


@pytest.fixture(scope="module")
def client():
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
    # Nothing the cluster started outlives it (the nanny waits for its worker).
    deadline = time.monotonic() + 30
    while (leaked := cluster_processes(children_before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not leaked, f"processes left running after the cluster closed: {leaked}"


@pytest.fixture(scope="module")
def sequential(digits):
    X, _ = digits
    return search(max_iter=3).fit(X).cv_results_


def test_dask_grid_search_equals_the_sequential_one(client, digits, sequential):
    X, _ = digits
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        distributed_results = search(max_iter=3).fit(X).cv_results_
    # The fits ran on both worker processes, not in this one.
    assert {task["worker"] for task in tasks.data} == set(client.nthreads())
    for key in ("params", "mean_test_score", "split0_test_score", "split2_test_score"):
        assert np.array_equal(
            np.asarray(distributed_results[key]), np.asarray(sequential[key])
        ), key


def threads_during_and_after_fit(n_threads):
    """Torch threads seen by the decoder while training, and after fit returns."""
    seen = []

    class RecordingDecoder(torch.nn.Linear):
        def forward(self, codes):
            seen.append(torch.get_num_threads())
            return super().forward(codes)

    def decoder(input_shape, n_components, n_info_components):
        return RecordingDecoder(n_components + n_info_components, input_shape[0])

    X = np.random.default_rng(0).random((40, 4))
    InfoMaxVAETransformer(max_iter=1, n_threads=n_threads, decoder=decoder, **SMALL).fit(X)
    return seen[-1], torch.get_num_threads()


def test_workers_cap_torch_threads_to_their_share(client):
    # The nanny starts each worker with OMP_NUM_THREADS=1, so torch uses one
    # thread per worker process (one task slot each) unless a fit asks for
    # more with n_threads, which is restored when the fit returns.
    assert sorted(client.nthreads().values()) == [1, 1]
    assert set(client.run(torch.get_num_threads).values()) == {1}
    assert client.submit(threads_during_and_after_fit, None, pure=False).result() == (1, 1)
    assert client.submit(threads_during_and_after_fit, 2, pure=False).result() == (2, 1)


def test_incremental_partial_fit_over_a_dask_array_matches_manual_chunks(client, digits):
    X, _ = digits
    X = X.astype(np.float32)
    chunk = 80
    X_dask = dask_array.from_array(X, chunks=(chunk, X.shape[1]))
    params = dict(max_iter=1, batch_size="auto", **SMALL)
    # Blocks in order (dask-ml shuffles them by default), as the loop below.
    incremental = Incremental(InfoMaxVAETransformer(**params), shuffle_blocks=False)
    incremental.fit(X_dask)

    by_hand = InfoMaxVAETransformer(**params)
    for start in range(0, len(X), chunk):
        by_hand.partial_fit(X[start : start + chunk])

    assert incremental.estimator_.n_iter_ == by_hand.n_iter_ == len(X) // chunk
    Z = incremental.transform(X_dask)
    assert isinstance(Z, dask_array.Array)
    np.testing.assert_array_equal(Z.compute(), by_hand.transform(X))


def test_killed_worker_mid_search_raises_or_retries_without_hanging(client, digits, sequential):
    # joblib's dask backend scatters each large argument (X, the fold indices)
    # to one worker. Killing a worker while it runs a fit makes dask rerun the
    # fit elsewhere; if the killed worker held scattered data that is still
    # needed, that data is gone and the search raises FutureCancelledError.
    # Either way it must end promptly, and the nanny restarts the worker.
    X, _ = digits
    pids = client.run(os.getpid)
    outcome = {}

    def run_search():
        try:
            with joblib.parallel_backend("dask"):
                outcome["results"] = search(max_iter=3).fit(X).cv_results_
        except Exception as exc:  # examined below
            outcome["error"] = exc

    thread = threading.Thread(target=run_search, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    busy = {}
    while not busy and time.monotonic() < deadline and thread.is_alive():
        busy = {w: keys for w, keys in client.processing().items() if keys}
        time.sleep(0.01)
    assert busy and thread.is_alive(), "the search ended before a worker could be killed"
    victim = next(iter(busy))
    os.kill(pids[victim], signal.SIGKILL)

    thread.join(timeout=120)
    assert not thread.is_alive(), "the search hung after a worker was killed"
    if "error" in outcome:
        assert isinstance(outcome["error"], (CancelledError, distributed.KilledWorker)), outcome
    else:  # retried on the surviving or restarted worker: the same answer
        assert np.array_equal(
            outcome["results"]["mean_test_score"], sequential["mean_test_score"]
        )
    client.wait_for_workers(2, timeout=60)
    assert pids[victim] not in client.run(os.getpid).values()
