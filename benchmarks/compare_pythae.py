"""Side by side with pythae 0.1.2: a plain VAE (alpha=0) against pythae's VAE / BetaVAE.

Checks the claim that skinfomax's plain VAE matches pythae's VAE / BetaVAE
on the same objective: both are trained on the same data and network layout
and their codes scored the same way.

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

Run::

    PYTHONPATH=. nice -n 10 python benchmarks/compare_pythae.py --jsonl results.jsonl
    PYTHONPATH=. python benchmarks/compare_pythae.py --report results.jsonl

Needs ``pip install pythae==0.1.2 mlxtend`` next to skinfomax (pythae pins
no torch: install ``torch==2.13.0`` first so that it is kept). Without
pythae, ``--quick`` runs the skinfomax side alone.
"""

import argparse
import contextlib
import importlib.util
from importlib import metadata
import io
import json
import logging
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from _common import header, parse_args

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


# -- skinfomax ----------------------------------------------------------------
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


def run_skinfomax(beta, seed, epochs, data):
    return {"": skinfomax_codecs(skinfomax_model(beta, seed, epochs).fit(data[0]))}


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
RUNNERS = {"skinfomax": run_skinfomax, "pythae": run_pythae}  # pythae: -final and -best


def train_and_score(args, data, out):
    rows = []
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
                    rows.append(row)
                    line = json.dumps(row)
                    print(line, flush=True)
                    if out is not None:
                        out.write(line + "\n")
                        out.flush()
    return rows


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


def report(rows, reference, baseline="skinfomax"):
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
    have_pythae = importlib.util.find_spec("pythae") is not None
    args = parse_args(parser, dict(betas=[1.0], seeds=[0], epochs=1, variants=(
        ["skinfomax", "pythae"] if have_pythae else ["skinfomax"])))
    if args.report:
        report([json.loads(line) for p in args.report for line in open(p) if line.strip()],
               args.reference)
        return
    if "pythae" in args.variants and not have_pythae:
        parser.error("pythae is not installed (pip install pythae==0.1.2); "
                     "--variants skinfomax runs the skinfomax side alone")
    # One thread per process: two processes share the 2 cores.
    header("pythae  : " + (metadata.version("pythae") if have_pythae else "not installed"),
           threads=1)
    data = load_split()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.jsonl, "a")) if args.jsonl else None
        rows = train_and_score(args, data, out)
    print()
    report(rows, args.reference)


if __name__ == "__main__":
    main()
