"""Side by side with pythae 0.1.2: a plain VAE (alpha=0) against pythae's VAE / BetaVAE.

Issue 11 reported that at beta=4 skinfomax's plain VAE trailed pythae's
BetaVAE on the same objective. This script trains both on the same data and
network layout and scores their codes the same way; ``--variants`` adds
controlled ablations of skinfomax (one change each, prototyped here by
monkeypatching, never in the package) and of the pythae protocol.

Setup (both libraries): 3,500 MNIST digits from ``mlxtend.data.mnist_data()``
(shuffled with seed 0, scaled to [0, 1]) for training, the other 1,500 held
out; encoder 784-256-128-(mean 10, log-variance 10), decoder 10-128-256-784,
ReLU, Bernoulli likelihood, Adam lr 1e-3, batch 128, 30 epochs.

Metrics, all on the held-out 1,500 digits, from the posterior means:

- probe: logistic regression on standardised codes (scaler and classifier
  fitted on the training codes);
- knn5 / knn5_std: 5-nearest-neighbour accuracy on raw / standardised codes;
- bce: reconstruction NLL in nats per digit, summed over the 784 pixels, of
  the decoder's probabilities at the posterior mean
  (``F.binary_cross_entropy``, the function pythae trains with, for both);
- kl: KL(q(z|x) || N(0, I)) per digit; au: active units (dimensions whose
  posterior mean varies over the held-out digits with variance > 0.01).

pythae is trained by its own ``BaseTrainer``. Its trainer keeps the epoch
with the lowest loss on ``eval_dataset``; without one it has no model to
save unless ``keep_best_on_train``. Each pythae run is given the held-out set
as ``eval_dataset`` and is scored twice: "pythae-final" (the weights after
the last epoch, ``trainer.model``) and "pythae-best" (``trainer._best_model``,
the epoch picked on the held-out loss).

Run (figures in benchmarks/results/compare_pythae.log)::

    nice -n 10 python benchmarks/compare_pythae.py --jsonl results.jsonl
    python benchmarks/compare_pythae.py --report results.jsonl

Needs ``pip install pythae==0.1.2 mlxtend`` next to skinfomax (pythae pins
no torch: install ``torch==2.13.0`` first so that it is kept).
"""

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header  # noqa: E402

N_TRAIN, N_LATENT, HIDDEN = 3500, 10, (256, 128)
EPOCHS, BATCH, LR = 30, 128, 1e-3
METRICS = ("probe", "knn5", "knn5_std", "bce", "kl", "au")


# -- data and scores ---------------------------------------------------------
def load_split():
    """3,500 training and 1,500 held-out MNIST digits in [0, 1], shuffled with seed 0."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    order = np.random.RandomState(0).permutation(len(X))
    X = (X[order] / 255.0).astype(np.float32)
    y = y[order].astype(np.int64)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def scores(encode, decode, data):
    """The metrics of one trained model; ``encode(X) -> (mean, log_var)``, ``decode(z) -> p``."""
    X_train, y_train, X_test, y_test = data
    with torch.no_grad():
        z_train, _ = encode(torch.from_numpy(X_train))
        z_test, log_var = encode(torch.from_numpy(X_test))
        p = decode(z_test)
        x = torch.from_numpy(X_test)
        bce = F.binary_cross_entropy(p, x, reduction="none").sum(1).mean().item()
        kl = (0.5 * (z_test.square() + log_var.exp() - 1 - log_var)).sum(1).mean().item()
    z_train, z_test = z_train.numpy().astype(np.float64), z_test.numpy().astype(np.float64)
    scaler = StandardScaler().fit(z_train)
    s_train, s_test = scaler.transform(z_train), scaler.transform(z_test)
    probe = LogisticRegression(max_iter=5000).fit(s_train, y_train).score(s_test, y_test)
    knn = KNeighborsClassifier(5).fit(z_train, y_train).score(z_test, y_test)
    knn_std = KNeighborsClassifier(5).fit(s_train, y_train).score(s_test, y_test)
    au = int((z_test.var(axis=0) > 0.01).sum())
    return dict(probe=probe, knn5=knn, knn5_std=knn_std, bce=bce, kl=kl, au=au)


# -- skinfomax and its ablations ---------------------------------------------
def _dataloader_batches(rows, batch_size, generator):
    # As torch's DataLoader(shuffle=True, drop_last=False): full batches and a
    # smaller last one (3500 rows -> 27 x 128 + 44), instead of 27 of ~130.
    order = torch.randperm(rows.n_rows, generator=generator).to(rows.index_device)
    return order.split(batch_size)


def _ceil_batches(rows, batch_size, generator):
    # ceil(n / batch_size) nearly equal batches, none larger than batch_size
    # (3500 rows -> 28 of 125): the DataLoader's number of steps, equal sizes.
    order = torch.randperm(rows.n_rows, generator=generator).to(rows.index_device)
    return order.tensor_split(max(1, -(-rows.n_rows // batch_size)))


def _sigmoid_bce(self, x, output):
    # pythae's likelihood: probabilities through a sigmoid, then clamped-log BCE.
    return F.binary_cross_entropy(torch.sigmoid(output), x, reduction="none").flatten(1).sum(1)


def _no_mi(self, x, codes, estimator, shift):
    # No critic in the step at all (the bound is a constant zero).
    return codes.new_zeros(())


ABLATIONS = {
    # name: (object, attribute, replacement)
    "batches28": ("skinfomax.training:Engine", "_batches", staticmethod(_dataloader_batches)),
    "ceil": ("skinfomax.training:Engine", "_batches", staticmethod(_ceil_batches)),
    "noclamp": (
        "skinfomax.networks", ("_LOG_VAR_MIN", "_LOG_VAR_MAX"), (-float("inf"), float("inf"))
    ),
    "nocritic": ("skinfomax.training:Engine", "mi_bound", _no_mi),
    "unfused": ("skinfomax.training", "_fused_adam_available", lambda device: False),
    "sigmoid": ("skinfomax.objectives:BernoulliLikelihood", "nll", _sigmoid_bce),
}


@contextlib.contextmanager
def patched(name):
    """Apply one ablation for the duration of the block."""
    if name is None:
        yield
        return
    import importlib

    where, attributes, values = ABLATIONS[name]
    module_name, _, class_name = where.partition(":")
    target = importlib.import_module(module_name)
    if class_name:
        target = getattr(target, class_name)
    if isinstance(attributes, str):
        attributes, values = (attributes,), (values,)
    saved = [target.__dict__[a] for a in attributes]
    for attribute, value in zip(attributes, values):
        setattr(target, attribute, value)
    try:
        yield
    finally:
        for attribute, value in zip(attributes, saved):
            setattr(target, attribute, value)


def skinfomax_model(beta, seed, epochs):
    from skinfomax import InfoMaxVAETransformer

    return InfoMaxVAETransformer(
        n_components=N_LATENT, hidden_layer_sizes=HIDDEN, likelihood="bernoulli",
        alpha=0.0, beta=beta, batch_size=BATCH, max_iter=epochs, learning_rate=LR,
        device="cpu", n_threads=1, random_state=seed,
    )


def skinfomax_codecs(model):
    def encode(x):
        mean, log_var, _ = model.encoder_(x)
        return mean, log_var

    return encode, lambda z: torch.sigmoid(model.decoder_(z))


def run_skinfomax(beta, seed, epochs, data, ablation=None):
    with patched(ablation):
        model = skinfomax_model(beta, seed, epochs).fit(data[0])
    return {"": skinfomax_codecs(model)}


# -- pythae -------------------------------------------------------------------
def run_pythae(beta, seed, epochs, data):
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, BetaVAE, BetaVAEConfig, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(784, HIDDEN[0]), torch.nn.ReLU(),
                torch.nn.Linear(HIDDEN[0], HIDDEN[1]), torch.nn.ReLU(),
            )
            self.embedding = torch.nn.Linear(HIDDEN[1], N_LATENT)
            self.log_var = torch.nn.Linear(HIDDEN[1], N_LATENT)

        def forward(self, x):
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(N_LATENT, HIDDEN[1]), torch.nn.ReLU(),
                torch.nn.Linear(HIDDEN[1], HIDDEN[0]), torch.nn.ReLU(),
                torch.nn.Linear(HIDDEN[0], 784), torch.nn.Sigmoid(),
            )

        def forward(self, z):
            return ModelOutput(reconstruction=self.layers(z))

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    common = dict(input_dim=(784,), latent_dim=N_LATENT, reconstruction_loss="bce")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if beta == 1:
            model = VAE(VAEConfig(**common), encoder=Encoder(), decoder=Decoder())
        else:
            model_config = BetaVAEConfig(beta=beta, **common)
            model = BetaVAE(model_config, encoder=Encoder(), decoder=Decoder())
        X_train, y_train, X_test, y_test = (torch.from_numpy(a) for a in data)
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
            config = BaseTrainerConfig(
                output_dir=out, num_epochs=epochs, learning_rate=LR,
                per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                seed=seed, no_cuda=True,
            )
            trainer = BaseTrainer(
                model, BaseDataset(X_train, y_train), BaseDataset(X_test, y_test), config
            )
            trainer.train()
    out = {}
    for tag, net in (("final", trainer.model), ("best", trainer._best_model)):
        net.eval()

        def encode(x, net=net):
            o = net.encoder(x)
            return o.embedding, o.log_covariance

        out[tag] = (encode, lambda z, net=net: net.decoder(z).reconstruction)
    return out


# -- driver -------------------------------------------------------------------
RUNNERS = {
    "skinfomax": lambda b, s, e, d: run_skinfomax(b, s, e, d),
    "pythae": run_pythae,  # scored as pythae-final and pythae-best
    **{f"skinfomax:{a}": (lambda b, s, e, d, a=a: run_skinfomax(b, s, e, d, a)) for a in ABLATIONS},
}


def train_and_score(args, data, out):
    for beta in args.betas:
        for variant in args.variants:
            for seed in args.seeds:
                start = time.perf_counter()
                models = RUNNERS[variant](beta, seed, args.epochs, data)
                seconds = time.perf_counter() - start
                for tag, (encode, decode) in models.items():
                    name = f"{variant}-{tag}" if tag else variant
                    row = dict(model=name, beta=beta, seed=seed, epochs=args.epochs,
                               seconds=round(seconds, 1), **scores(encode, decode, data))
                    line = json.dumps(row)
                    print(line, flush=True)
                    if out is not None:
                        out.write(line + "\n")
                        out.flush()


def _p_values(group, others, paired):
    """p-values of probe, knn5 and bce: Welch (unpaired) or paired by seed."""
    cells = []
    for m in ("probe", "knn5", "bce"):
        if paired:
            by_seed = {r["seed"]: r[m] for r in others}
            pairs = [(r[m], by_seed[r["seed"]]) for r in group if r["seed"] in by_seed]
            ok = len(pairs) >= 2 and any(a != b for a, b in pairs)
            p = stats.ttest_rel(*zip(*pairs)).pvalue if ok else None
        else:
            ok = len(group) >= 2 and len(others) >= 2
            p = stats.ttest_ind([r[m] for r in group], [r[m] for r in others],
                                equal_var=False).pvalue if ok else None
        cells.append("      -" if p is None else f"{p:7.3f}")
    return " ".join(cells)


def report(paths, reference, baseline="skinfomax"):
    rows = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    print(f"mean +- sd over seeds. Welch: unpaired t-test against {reference} (same beta, "
          f"{EPOCHS} epochs);\npaired: t-test paired by seed against {baseline} (same beta, "
          f"{EPOCHS} epochs; same seed = same initial weights). p of probe, knn5, bce.\n")
    print(f"{'model':22s} {'beta':>4s} {'ep':>3s} {'n':>2s} " + " ".join(
        f"{m:>15s}" for m in METRICS) + "  Welch p: probe knn5 bce   paired p: probe knn5 bce")
    keys = sorted({(r["beta"], r["epochs"], r["model"]) for r in rows})
    for beta, epochs, model in keys:
        group = [r for r in rows if (r["beta"], r["epochs"], r["model"]) == (beta, epochs, model)]
        ref, base = ([r for r in rows if (r["beta"], r["epochs"], r["model"]) == (beta, EPOCHS, m)]
                     for m in (reference, baseline))
        cells = []
        for m in METRICS:
            v = np.array([r[m] for r in group], float)
            cells.append(f"{v.mean():8.3f}+-{v.std(ddof=1) if len(v) > 1 else 0:5.3f}")
        welch = _p_values(group, ref, paired=False) if model != reference else " " * 23
        paired = _p_values(group, base, paired=True) if model.startswith(baseline) else ""
        print(f"{model:22s} {beta:4g} {epochs:3d} {len(group):2d} " + " ".join(cells)
              + "  " + welch + "   " + paired)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--variants", nargs="+", default=["skinfomax", "pythae"],
                        choices=sorted(RUNNERS))
    parser.add_argument("--jsonl", help="append one JSON line per scored model here")
    parser.add_argument("--report", nargs="+", metavar="JSONL",
                        help="only summarise earlier --jsonl files")
    parser.add_argument("--reference", default="pythae-final")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.reference)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per process: two processes share the 2 cores
    try:
        import pythae

        header(f"pythae  : {pythae.__version__ if hasattr(pythae, '__version__') else '0.1.2'}"
               " | torch threads set to 1 for the runs")
        data = load_split()
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(args.jsonl, "a")) if args.jsonl else None
            train_and_score(args, data, out)
        if args.jsonl:
            report([args.jsonl], args.reference)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
