"""Benchmark: simulated events per second for the `mixed` sample, noise 1e-3, one core.

Prints the median of several repetitions (in memory, and streamed to HDF5) and the target.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from trigkit.l0.detector import SimConfig  # noqa: E402
from trigkit.l0.simulate import simulate, write_h5  # noqa: E402

TARGET_EV_PER_S = 20_000
EVENTS = 20_000
REPEATS = 5


def main() -> None:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    cfg = SimConfig().replace(detector={"noise_rate": 1e-3})
    simulate(cfg, "mixed", 2000, 0)  # warm-up
    mem, h5 = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPEATS):
            t0 = time.perf_counter()
            simulate(cfg, "mixed", EVENTS, i)
            mem.append(EVENTS / (time.perf_counter() - t0))
            path = Path(tmp) / f"b{i}.h5"
            t0 = time.perf_counter()
            write_h5(path, cfg, "mixed", EVENTS, i)
            h5.append(EVENTS / (time.perf_counter() - t0))
    med_mem, med_h5 = statistics.median(mem), statistics.median(h5)
    print(f"simulate mixed, noise 1e-3, {EVENTS} events x {REPEATS}, one core")
    print(f"  in memory : median {med_mem:10,.0f} ev/s  (min {min(mem):,.0f}, max {max(mem):,.0f})")
    print(f"  to HDF5   : median {med_h5:10,.0f} ev/s  (min {min(h5):,.0f}, max {max(h5):,.0f})")
    verdict = "MET" if med_h5 >= TARGET_EV_PER_S else "MISSED"
    print(f"  target >= {TARGET_EV_PER_S:,} ev/s (HDF5 path): {verdict}")


if __name__ == "__main__":
    main()
