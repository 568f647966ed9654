"""Benchmark: integer-reference inference vs qonnx execution of the same QONNX graph, one core.

Needs an exported model (default l0_pointing_tnn: `make train export MODEL=l0_pointing_tnn`).
Prints medians of repeated runs and the ratio; target >= 50,000 events/s.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

TARGET_EV_PER_S = 50_000


def main(name: str = "l0_pointing_tnn") -> int:
    from trigkit.firmware.export import qonnx_execute
    from trigkit.firmware.reference import ReferenceModel

    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    build = Path("build") / name
    onnx_path, vectors = build / "model.qonnx.onnx", build / "vectors.npz"
    if not onnx_path.is_file() or not vectors.is_file():
        print(f"bench_reference: {onnx_path} or {vectors} missing; run "
              f"`make train export MODEL={name}` first (nothing measured)")
        return 1
    ref = ReferenceModel(onnx_path)
    x = np.load(vectors)["x"]
    x = np.concatenate([x] * max(1, -(-20000 // len(x))))[:20000]
    ref.predict_int(x[:512])  # warm-up
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        ref.predict_int(x)
        rates.append(len(x) / (time.perf_counter() - t0))
    q_rates = []
    xq = ref.to_graph_layout(x[:512])
    for _ in range(3):
        t0 = time.perf_counter()
        qonnx_execute(onnx_path, xq)
        q_rates.append(len(xq) / (time.perf_counter() - t0))
    med, qmed = statistics.median(rates), statistics.median(q_rates)
    print(f"{name}: integer reference, {len(x)} events x 5, one core: median {med:,.0f} ev/s "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"{name}: qonnx execute_onnx (onnxruntime per node + qonnx custom ops), {len(xq)} "
          f"events x 3: median {qmed:,.0f} ev/s")
    print(f"  ratio reference / qonnx: {med / qmed:.1f}x")
    print(f"  target >= {TARGET_EV_PER_S:,} ev/s: {'MET' if med >= TARGET_EV_PER_S else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
