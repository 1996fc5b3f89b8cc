"""Side by side with pythae 0.1.2: a plain VAE (alpha=0) against pythae's VAE / BetaVAE.

The same objective, data, network layout and scores for both. Data: 3,500
MNIST digits of ``mlxtend.data.mnist_data()`` (shuffled with seed 0, in [0,
1]) to train on, the other 1,500 held out. Model: encoder 784-256-128-(mean
10, log-variance 10), decoder 10-128-256-784, ReLU, Bernoulli likelihood, Adam
lr 1e-3, batch 128, 30 epochs. Metrics on the held-out digits, from the
posterior means: probe and knn5 / knn5_std (``_common.probes``); bce
(reconstruction NLL in nats per digit at the posterior mean,
``F.binary_cross_entropy`` as pythae trains with); kl (KL(q(z|x) || N(0, I))
per digit); au (active units: posterior-mean variance > 0.01).

pythae is scored at its last epoch ("pythae-final"; its trainer's copy of the
epoch of lowest held-out loss is left out: it was picked on the held-out rows).
Needs ``pip install pythae==0.1.2 mlxtend`` (install ``torch==2.13.0`` first:
pythae pins none); without pythae, ``--quick`` runs the skinfomax side alone::

    PYTHONPATH=. python benchmarks/studies/compare_pythae.py --jsonl results.jsonl
    PYTHONPATH=. python benchmarks/studies/compare_pythae.py --report results.jsonl
"""

import contextlib
import importlib.util
import io
import itertools
import json
import logging
import os
import sys
import tempfile
from importlib import metadata

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, parse_args, probes, timed

N_TRAIN, N_LATENT, HIDDEN = 3500, 10, (256, 128)
EPOCHS, BATCH, LR = 30, 128, 1e-3
METRICS = ("probe", "knn5", "knn5_std", "bce", "kl", "au")


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
    return dict(**probes(z_train, y_train, z_test, y_test), bce=bce, kl=kl,
                au=int((z_test.var(axis=0) > 0.01).sum()))


def run_skinfomax(beta, seed, epochs, data):
    from skinfomax import InfoMaxVAETransformer

    model = InfoMaxVAETransformer(
        n_components=N_LATENT, hidden_layer_sizes=HIDDEN, likelihood="bernoulli",
        alpha=0.0, beta=beta, batch_size=BATCH, max_iter=epochs, learning_rate=LR,
        device="cpu", n_threads=1, random_state=seed,
    ).fit(data[0])
    return lambda x: model.encoder_(x)[:2], lambda z: torch.sigmoid(model.decoder_(z))


def run_pythae(beta, seed, epochs, data):
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, BetaVAE, BetaVAEConfig, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    def layers(*sizes):  # Linear and ReLU layers
        pairs = zip(sizes[:-1], sizes[1:])
        return [m for a, b in pairs for m in (torch.nn.Linear(a, b), torch.nn.ReLU())]

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(*layers(784, *HIDDEN))
            self.embedding = torch.nn.Linear(HIDDEN[1], N_LATENT)
            self.log_var = torch.nn.Linear(HIDDEN[1], N_LATENT)

        def forward(self, x):
            h = self.body(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(*layers(N_LATENT, *HIDDEN[::-1], 784)[:-1],
                                              torch.nn.Sigmoid())

        def forward(self, z):
            return ModelOutput(reconstruction=self.layers(z))

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    common = dict(input_dim=(784,), latent_dim=N_LATENT, reconstruction_loss="bce")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = VAEConfig(**common) if beta == 1 else BetaVAEConfig(beta=beta, **common)
        model = (VAE if beta == 1 else BetaVAE)(config, encoder=Encoder(), decoder=Decoder())
        X_train, y_train, X_test, y_test = (torch.from_numpy(a) for a in data)
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
            config = BaseTrainerConfig(
                output_dir=out, num_epochs=epochs, learning_rate=LR,
                per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                seed=seed, no_cuda=True,
            )
            trainer = BaseTrainer(model, BaseDataset(X_train, y_train),
                                  BaseDataset(X_test, y_test), config)
            trainer.train()
    net = trainer.model.eval()  # the last epoch's weights ("pythae-final")

    def encode(x):
        o = net.encoder(x)
        return o.embedding, o.log_covariance

    return encode, lambda z: net.decoder(z).reconstruction


RUNNERS = {"skinfomax": run_skinfomax, "pythae": run_pythae}


def train_and_score(args, data, out):
    rows = []
    for beta, variant, seed in itertools.product(args.betas, args.variants, args.seeds):
        seconds, (encode, decode) = timed(lambda: RUNNERS[variant](beta, seed, args.epochs, data))
        rows.append(dict(model={"pythae": "pythae-final"}.get(variant, variant), beta=beta,
                         seed=seed, epochs=args.epochs, seconds=round(seconds, 1),
                         **scores(encode, decode, data)))
        for stream in (sys.stdout, out) if out else (sys.stdout,):
            print(json.dumps(rows[-1]), file=stream, flush=True)
    return rows


def report(rows, reference="pythae-final"):
    print(f"mean +- sd over seeds; Welch p: unpaired t-test of probe, knn5 and bce against "
          f"{reference} (same beta, {EPOCHS} epochs)\n")
    print(f"{'model':22s} {'beta':>4s} {'ep':>3s} {'n':>2s} " + " ".join(
        f"{m:>15s}" for m in METRICS) + "  Welch p: probe knn5 bce")
    for beta, epochs, model in sorted({(r["beta"], r["epochs"], r["model"]) for r in rows}):
        group = [r for r in rows if (r["beta"], r["epochs"], r["model"]) == (beta, epochs, model)]
        ref = [r for r in rows if (r["beta"], r["epochs"], r["model"]) == (beta, EPOCHS, reference)]
        cells = []
        for m in METRICS:
            v = np.array([r[m] for r in group], float)
            cells.append(f"{v.mean():8.3f}+-{v.std(ddof=1) if len(v) > 1 else 0:5.3f}")
        for m in ("probe", "knn5", "bce") if model != reference else ():
            a, b = [r[m] for r in group], [r[m] for r in ref]
            p = stats.ttest_ind(a, b, equal_var=False).pvalue if min(len(a), len(b)) >= 2 else None
            cells.append("      -" if p is None else f"{p:7.3f}")
        print(f"{model:22s} {beta:4g} {epochs:3d} {len(group):2d} " + " ".join(cells))


def main():
    have_pythae = importlib.util.find_spec("pythae") is not None
    args = parse_args(__doc__, dict(betas=[1.0], seeds=[0], epochs=1, variants=(
        ["skinfomax", "pythae"] if have_pythae else ["skinfomax"])),
        variants=["skinfomax", "pythae"], betas=[1.0, 4.0], seeds=list(range(5)), epochs=EPOCHS,
        jsonl=(None, "append one JSON line per scored model here"),
        report=([], "only summarise these earlier --jsonl files"))
    if args.report:
        return report([json.loads(line) for p in args.report for line in open(p) if line.strip()])
    if "pythae" in args.variants and not have_pythae:
        sys.exit("pythae is not installed (pip install pythae==0.1.2); "
                 "--variants skinfomax runs the skinfomax side alone")
    # One thread per process: two processes share the 2 cores.
    header("pythae  : " + (metadata.version("pythae") if have_pythae else "not installed"),
           threads=1)
    data = load_split()
    with open(args.jsonl, "a") if args.jsonl else contextlib.nullcontext() as out:
        rows = train_and_score(args, data, out)
    print()
    report(rows)


if __name__ == "__main__":
    main()
