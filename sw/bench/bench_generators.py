"""Benchmark: the offline toy generators on one core (jets, monojet events, electron tracks).

Prints the median rate of several repetitions beside the target.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import statistics  # noqa: E402
import time  # noqa: E402

from trigkit.offline.electrons import ElectronConfig, generate_electrons  # noqa: E402
from trigkit.offline.jets import JetConfig, generate  # noqa: E402
from trigkit.offline.monojet import MonojetConfig, generate_monojet  # noqa: E402

REPEATS = 5
#: (name, events per repetition, callable(n, seed), target events/s)
CASES = (
    ("jets, mixed, 2 x 25 x 25 images", 6_000,
     lambda n, s: generate(JetConfig(), "mixed", n, s), 5_000),
    ("monojet SM events (selected)", 100_000,
     lambda n, s: generate_monojet(MonojetConfig(), "sm", n, s), 100_000),
    ("low-pT electron/hadron tracks", 100_000,
     lambda n, s: generate_electrons(ElectronConfig(), n, s), 100_000),
)


def main() -> None:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    for name, n, run, target in CASES:
        run(n // 10, 0)  # warm-up
        rates = []
        for i in range(REPEATS):
            t0 = time.perf_counter()
            run(n, i + 1)
            rates.append(n / (time.perf_counter() - t0))
        med = statistics.median(rates)
        verdict = "met" if med >= target else "NOT met"
        print(f"{name}: median {med:,.0f} ev/s over {REPEATS} x {n:,} "
              f"(target >= {target:,} ev/s: {verdict})")


if __name__ == "__main__":
    main()
