"""Peak memory of fit on 70,000 x 784 float32, in memory and streamed.

Each case runs in a fresh subprocess that imports everything, records its
resident memory, loads the data, fits, and reports ``VmHWM`` (peak resident
set, which also counts the pages of a memory-mapped file that were read:
page cache the kernel may drop) and peak ``RssAnon`` (the process's own
allocations, polled every 5 ms; the honest figure for the memmap cases).
Cases: ``array`` (X in memory), ``memmap`` (np.load(mmap_mode="r"), streamed)
and ``partial_fit`` (chunks of ``--chunk`` rows copied from the memmap).

    PYTHONPATH=. python benchmarks/speed/bench_memory.py --n-samples 70000 --epochs 1
"""

import json
import os
import sys
import tempfile
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for _common
from _common import MODEL, header, load_after, load_data, parse_args, proc_status, run_worker
from skinfomax import InfoMaxVAETransformer

MiB = 2**20


def worker(case, path, epochs, threads, chunk):
    torch.set_num_threads(threads)
    peak_anon = [0]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], proc_status("RssAnon")["RssAnon"])
            time.sleep(0.005)

    threading.Thread(target=poll, daemon=True).start()
    base = proc_status("VmRSS")["VmRSS"]
    X = np.load(path, mmap_mode=None if case == "array" else "r")
    est = InfoMaxVAETransformer(max_iter=epochs, device="cpu", random_state=0, **MODEL)
    start = time.perf_counter()
    if case == "partial_fit":
        for _ in range(epochs):
            for a in range(0, X.shape[0], chunk):
                est.partial_fit(np.array(X[a : a + chunk]))
    else:
        est.fit(X)
    seconds = time.perf_counter() - start
    stop.set()
    time.sleep(0.02)
    print(json.dumps({"base": base, "hwm": proc_status("VmHWM")["VmHWM"], "n": X.shape[0] * epochs,
                      "peak_anon": peak_anon[0], "data": X.nbytes, "seconds": seconds}))


def main():
    args = parse_args(__doc__, dict(n_samples=1000, threads=1, chunk=400),
                      n_samples=70000, epochs=1, threads=2, chunk=(10000, "rows per partial_fit"))
    if args.worker:
        return worker(*args.worker, args.epochs, args.threads, args.chunk)
    header(f"children: {args.threads} torch thread(s) each")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npy")
        np.save(path, load_data(args.n_samples))
        print(f"data: {args.n_samples} x 784 float32 = "
              f"{os.path.getsize(path) / MiB:.0f} MiB, {args.epochs} epoch(s), batch 128")
        print(f"{'case':12s} {'imports':>8s} {'peak RSS':>9s} {'peak anon':>10s} "
              f"{'RSS - imports':>14s} {'over data':>10s} {'samples/s':>10s}")
        for case in ("memmap", "partial_fit") if args.quick else ("array", "memmap", "partial_fit"):
            r = run_worker(__file__, case, path, "--epochs", args.epochs, "--threads",
                           args.threads, "--chunk", args.chunk,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
            grown = r["hwm"] - r["base"]
            print(f"{case:12s} {r['base'] / MiB:7.0f}M {r['hwm'] / MiB:8.0f}M "
                  f"{r['peak_anon'] / MiB:9.0f}M {grown / MiB:13.0f}M "
                  f"{(grown - r['data']) / MiB:9.0f}M {r['n'] / r['seconds']:10,.0f}")
    print("imports: RSS after importing numpy, torch, sklearn, skinfomax (before data); over data:"
          " peak RSS - imports - size of X (target: <= 300 MiB); for memmap cases peak RSS\n"
          "includes file pages read (droppable page cache); peak anon is the process's own memory.")
    load_after()


if __name__ == "__main__":
    main()
