"""Where a default `mutual_information` call spends its time, stage by stage.

Wraps the trainer's pieces with wall-clock timers (one call, no
instrumentation inside torch): all critic training (``train_critics``, with
the early-stopping scoring inside it), that scoring alone (``_validate``),
the width choice's and the test parts' all-pairs evaluation, and prints each
training's wall time, per-member epochs of best validation bound, and its
epochs grouped by how many critics were still training (an epoch's cost
falls as critics stop)::

    PYTHONPATH=. python benchmarks/profile_mi_stages.py --n 20000 --threads 2
"""

import argparse
import time

from _common import header
from bench_mi import channel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    header(threads=args.threads)
    import skinfomax.estimation as estimation
    from skinfomax import mutual_information

    seconds = dict.fromkeys(["training", "early-stopping scoring", "choice evaluation",
                             "test evaluation"], 0.0)
    best_epochs, training_seconds = [], []
    # Per training: {critics still training: [epochs, seconds]}, timed
    # from one early-stopping scoring to the next.
    epochs_by_members, clock = [], [time.perf_counter()]

    def timed(function, name):
        def wrapper(*a, **k):
            start = time.perf_counter()
            result = function(*a, **k)
            key = name(a) if callable(name) else name
            seconds[key] += time.perf_counter() - start
            return result
        return wrapper

    train_critics = estimation.train_critics

    def training(*a, **k):
        epochs_by_members.append({})
        clock[0] = start = time.perf_counter()
        result = train_critics(*a, **k)
        training_seconds.append(time.perf_counter() - start)
        best_epochs.append([int(e) for stack in result for e in stack])
        return result

    estimation.train_critics = timed(training, "training")
    validate = timed(estimation._validate, "early-stopping scoring")

    def counted_validate(active, *a, **k):
        members = sum(len(m.training) for m in active)
        result = validate(active, *a, **k)
        now = time.perf_counter()
        entry = epochs_by_members[-1].setdefault(members, [0, 0.0])
        entry[0] += 1
        entry[1] += now - clock[0]
        clock[0] = now
        return result

    estimation._validate = counted_validate
    # _mean_critic_bounds(..., influence): True for the choice, False for the test parts.
    estimation._mean_critic_bounds = timed(
        estimation._mean_critic_bounds,
        lambda a: "choice evaluation" if a[-1] else "test evaluation")
    x, z, truth = channel(args.n)
    start = time.perf_counter()
    result = mutual_information(x, z, random_state=0)
    total = time.perf_counter() - start
    print(f"n={args.n:,}: {total:.1f} s; estimate {result.mi:.3f} ± {result.se:.3f} "
          f"({100 * (result.mi - truth) / truth:+.1f}%), critic {result.critic}")
    for name, value in seconds.items():
        print(f"  {name:24s} {value:6.2f} s")
    for k, epochs in enumerate(best_epochs):
        print(f"  training {k + 1}: {training_seconds[k]:.2f} s, best epochs {epochs}")
        for members, (count, secs) in sorted(epochs_by_members[k].items(), reverse=True):
            print(f"    critics training {members:3d}: {count:4d} epochs, {secs:6.2f} s "
                  f"({1000 * secs / count:.0f} ms an epoch)")


if __name__ == "__main__":
    main()
