"""Soak: many fit / transform / score / save / load cycles in one process; memory must not grow.

Each cycle fits a small model on 500 digits, transforms, scores, saves, loads and
checks the loaded model transforms the same. ``VmRSS``, ``RssAnon`` (the process's own
allocations) and CUDA memory at cycle 10 (after warm-up) are compared with the last
cycle's; growth above 5% exits with status 1.

    PYTHONPATH=. python benchmarks/speed/soak.py --cycles 200 [--device cuda]

``--quick`` runs 4 cycles against cycle 2 and reports without judging the growth.
"""

import gc
import os
import sys
import tempfile

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import header, load_after, parse_args, proc_status
from skinfomax import InfoMaxVAETransformer

MiB = 2**20
LIMIT = 0.05


def cycle(X, device, path):
    vae = InfoMaxVAETransformer(
        n_components=4, hidden_layer_sizes=(32,), critic_hidden_layer_sizes=(32,),
        max_iter=2, batch_size=64, device=device, random_state=0,
    ).fit(X)
    Z = vae.transform(X)
    vae.score(X)
    vae.save(path)
    loaded = InfoMaxVAETransformer.load(path)
    if not np.array_equal(loaded.transform(X), Z):
        raise AssertionError("the loaded model transforms differently")


def main():
    args = parse_args(__doc__, dict(cycles=4, reference=2, threads=1), cycles=200,
                      reference=(10, "cycle whose memory is the base"), device="cpu",
                      threads=(0, "torch threads (0: torch's default)"))
    header(threads=args.threads or None)
    X = (load_digits().data[:500] / 16).astype(np.float32)
    base = None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "vae.safetensors")
        for i in range(1, args.cycles + 1):
            cycle(X, args.device, path)
            gc.collect()
            figures = proc_status("VmRSS", "RssAnon")
            if args.device.startswith("cuda"):
                figures.update(cuda_allocated=torch.cuda.memory_allocated(),
                               cuda_reserved=torch.cuda.memory_reserved())
            if i == args.reference:
                base = figures
            if i in (1, args.reference, args.cycles) or i % 50 == 0:
                print(f"cycle {i:4d}: " + "  ".join(
                    f"{k} {v / MiB:8.2f} MiB" for k, v in figures.items()), flush=True)
    print()
    failed = False
    for field, value in figures.items():
        growth = (value - base[field]) / base[field] if base[field] else 0.0
        failed |= growth > LIMIT
        print(f"{field:15s} cycle {args.reference}: {base[field] / MiB:8.2f} MiB   "
              f"cycle {args.cycles}: {value / MiB:8.2f} MiB   growth {100 * growth:+.2f}%")
    load_after()
    if args.quick:
        print(f"quick run: {args.cycles} cycles are too few to judge growth; limit not enforced")
        return 0
    print(f"{'FAIL' if failed else 'OK'}: limit {100 * LIMIT:.0f}% growth")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
