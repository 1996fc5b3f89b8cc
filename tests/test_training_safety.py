"""No lost work: divergence and Ctrl-C leave the estimator as documented."""

import _thread
import signal
import threading
import time

import numpy as np
import pytest
import torch

from skinfomax._networks import build_mlp
from skinfomax._training import TrainingDiverged

from .conftest import small_vae


# -- divergence ----------------------------------------------------------------------
class CountingDecoder(torch.nn.Module):
    """An MLP decoder that counts its training steps and acts from the ``at``-th on."""

    def __init__(self, n_codes, n_features, at, action):
        super().__init__()
        self.net = build_mlp([n_codes, 16, n_features])
        self.steps, self.at, self.action = 0, at, action

    def forward(self, codes):
        out = self.net(codes)
        if self.training:
            self.steps += 1
            if self.steps >= self.at:
                return self.action(out)
        return out


def poisoned_decoder(input_shape, n_components, n_info_components):
    """NaN from the 9th step on: with 4 steps an epoch, a divergence in epoch 3."""
    return CountingDecoder(n_components + n_info_components, input_shape[0], 9,
                           lambda out: out * float("nan"))


def test_divergence_names_the_epoch_and_leaves_an_unfitted_estimator_unfitted(digits):
    X = digits[0][:64]
    # 64 rows in batches of 16: 4 steps an epoch; the 9th step is epoch 3's first.
    vae = small_vae(batch_size=16, max_iter=5, decoder=poisoned_decoder)
    with pytest.raises(TrainingDiverged, match="epoch 3") as error:
        vae.fit(X)
    for cause in ("learning_rate", "critic_learning_rate", "alpha", "unscaled"):
        assert cause in str(error.value)
    assert not hasattr(vae, "n_iter_") and not hasattr(vae, "_engine")


def test_divergence_with_early_stopping_keeps_the_best_epoch(digits):
    X = digits[0][:80]
    vae = small_vae(batch_size=16, max_iter=6, decoder=poisoned_decoder, early_stopping=True,
                    validation_fraction=0.2, tol=0.0, n_iter_no_change=10)
    with pytest.warns(RuntimeWarning, match="diverged in epoch 3.*keeps the weights"):
        vae.fit(X)
    assert [h["epoch"] for h in vae.history_] == [1, 2]
    assert np.isfinite(vae.transform(X)).all() and np.isfinite(vae.score(X))


@pytest.mark.parametrize("incremental", [False, True])
def test_divergence_of_a_continuing_fit_keeps_the_previous_state(digits, incremental):
    X = digits[0]

    def train(vae):
        return vae.partial_fit(X) if incremental else vae.fit(X)

    vae, reference = (small_vae(max_iter=2, warm_start=True) for _ in range(2))
    train(vae), train(reference)
    Z, history = vae.transform(X), list(vae.history_)
    vae.set_params(learning_rate=1e12, critic_learning_rate=1e12)
    with pytest.raises(TrainingDiverged, match=f"epoch {len(history) + 1}:"):
        train(vae)
    np.testing.assert_array_equal(vae.transform(X), Z)
    assert vae.history_ == history and vae.n_iter_ == len(history)
    # Weights, optimiser moments, random streams and history length all went back:
    # continuing now is bit for bit the run that never failed.
    vae.set_params(learning_rate=1e-3, critic_learning_rate=1e-3)
    train(vae), train(reference)
    np.testing.assert_array_equal(vae.transform(X), reference.transform(X))
    assert vae.history_ == reference.history_


# -- interruption ----------------------------------------------------------------------
def send_sigint(how):
    """A SIGINT to the main thread, as Ctrl-C sends it."""
    if how == "interrupt_main":
        _thread.interrupt_main()
    else:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def ctrl_c_from_another_thread(how="interrupt_main", after=None, when=None):
    """Send a SIGINT from another thread ``after`` seconds, or once the event ``when`` is set."""
    thread = threading.Thread(
        target=lambda: (time.sleep(after) if when is None else when.wait(600), send_sigint(how))
    )
    thread.start()
    return thread


def signalling_decoder(event):
    """A decoder that sets ``event`` at its 9th step (4 steps an epoch: epoch 3 starts)."""
    def factory(input_shape, n_components, n_info_components):
        return CountingDecoder(n_components + n_info_components, input_shape[0], 9,
                               lambda out: (event.set(), out)[1])
    return factory


@pytest.mark.parametrize("how", ["interrupt_main", "pthread_kill"])
def test_ctrl_c_keeps_the_completed_epochs(digits, how):
    X = digits[0][:64]
    started_epoch_3 = threading.Event()
    vae = small_vae(batch_size=16, max_iter=100_000, decoder=signalling_decoder(started_epoch_3))
    thread = ctrl_c_from_another_thread(how, when=started_epoch_3)
    with pytest.warns(RuntimeWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        vae.fit(X)
    thread.join()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert vae.n_iter_ == len(vae.history_) >= 2
    assert [h["epoch"] for h in vae.history_] == list(range(1, vae.n_iter_ + 1))
    assert all(np.isfinite(list(h.values())).all() for h in vae.history_)
    assert np.isfinite(vae.transform(X)).all()
    vae.partial_fit(X)  # and it goes on
    assert vae.n_iter_ == len(vae.history_) and vae.history_[-1]["epoch"] == vae.n_iter_


@pytest.mark.slow
def test_ctrl_c_before_an_epoch_completes_changes_nothing(digits):
    X = digits[0]
    vae = small_vae(max_iter=1).fit(X)
    Z, history = vae.transform(X), list(vae.history_)
    # One epoch of 2-row batches over 40,000 rows outlasts the delay by far.
    chunk = np.tile(X, (167, 1))[:40_000]
    vae.set_params(batch_size=2)
    thread = ctrl_c_from_another_thread(after=2.0)
    with pytest.warns(RuntimeWarning, match="as it was"), pytest.raises(KeyboardInterrupt):
        vae.partial_fit(chunk)
    thread.join()
    np.testing.assert_array_equal(vae.transform(X), Z)
    assert vae.history_ == history and vae.batch_size_ == 50


def test_interrupt_inside_a_step_still_leaves_a_consistent_model(digits):
    """Where the interrupt cannot be deferred (a handler of the caller's), it lands mid-step."""
    X = digits[0][:64]

    def raising_handler(signum, frame):
        raise KeyboardInterrupt

    started_epoch_3 = threading.Event()
    vae = small_vae(batch_size=16, max_iter=100_000, decoder=signalling_decoder(started_epoch_3))
    previous = signal.signal(signal.SIGINT, raising_handler)
    try:
        thread = ctrl_c_from_another_thread(when=started_epoch_3)
        with pytest.warns(RuntimeWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
            vae.fit(X)
        thread.join()
        assert signal.getsignal(signal.SIGINT) is raising_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert vae.n_iter_ == len(vae.history_) >= 2
    assert np.isfinite(vae.transform(X)).all()
