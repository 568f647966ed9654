"""Benchmark: the integer reference against onnxruntime, the hls4ml C simulation, and the memory
of streaming a million events through `trigkit predict`.

Needs trained and exported models (`make train export MODEL=...`): l0_pointing_tnn always, the
jet and electron ternary models when present. Every rate is the median of 5 runs on one core;
onnxruntime runs the same network as a QCDQ graph (the trained Brevitas model exported with
QONNX Quant nodes, converted by qonnx's QuantToQCDQ) on one thread, on the same events, and its
outputs are compared with the reference's, value for value.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import contextlib  # noqa: E402
import io  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trigkit.core.card import load_card  # noqa: E402
from trigkit.firmware.export import with_batch  # noqa: E402
from trigkit.firmware.hls import build_hls_project  # noqa: E402
from trigkit.firmware.reference import ReferenceModel  # noqa: E402
from trigkit.l0.detector import SimConfig  # noqa: E402
from trigkit.l0.simulate import write_h5  # noqa: E402
from trigkit.learn.models import to_input  # noqa: E402
from trigkit.learn.train import load_trained_model  # noqa: E402

MODELS = ("l0_pointing_tnn", "jet_darkphoton_tnn", "lowpt_electron_tnn")
TARGET_EV_PER_S = 100_000
CSIM_TARGET_S = 20.0
REPEATS = 5
EVENTS = 20_000
STREAM_EVENTS = 1_000_000


def median_rate(fn, n: int, repeats: int = REPEATS) -> tuple[float, float, float]:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), min(rates), max(rates)


def qcdq_session(name: str, batch: int):
    """onnxruntime on the trained network exported as a QCDQ graph (NCHW, batch ``batch``)."""
    import onnxruntime as ort
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ
    from qonnx.util.cleanup import cleanup_model

    card = load_card(name)
    model = load_trained_model(card)
    example = to_input(np.zeros((1, *card.data.input_shape), np.float32), card)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            export_qonnx(model, input_t=example, export_path=str(raw), dynamo=False)
        mw = cleanup_model(ModelWrapper(str(raw))).transform(GemmToMatMul())
        mw = with_batch(cleanup_model(mw), batch).transform(QuantToQCDQ())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(mw.model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    return sess, card


def bench_model(name: str) -> bool:
    build = Path("build") / name
    onnx_path, vectors = build / "model.qonnx.onnx", build / "vectors.npz"
    if not onnx_path.is_file() or not vectors.is_file():
        print(f"{name}: not exported (make train export MODEL={name}); skipped")
        return name != MODELS[0]
    ref = ReferenceModel(onnx_path)
    v = np.load(vectors)
    x = np.concatenate([v["x"]] * max(1, -(-EVENTS // len(v["x"]))))[:EVENTS]
    ref.predict_int(x[:1024])  # warm-up
    med, lo, hi = median_rate(lambda: ref.predict_int(x), len(x))
    y_ref = ref.predict(x)
    batch = 1024
    sess, card = qcdq_session(name, batch)
    xin = to_input(x, card).numpy()
    xin = np.concatenate([xin, np.zeros((-len(xin) % batch, *xin.shape[1:]), np.float32)])
    iname = sess.get_inputs()[0].name

    def run_ort() -> np.ndarray:
        return np.concatenate([sess.run(None, {iname: xin[s:s + batch]})[0]
                               for s in range(0, len(xin), batch)])[:len(x)]

    y_ort = run_ort().reshape(len(x), -1).astype(np.float64)
    omed, _, _ = median_rate(run_ort, len(x))
    differ = np.any(y_ort != y_ref.reshape(len(x), -1), axis=1)
    print(f"{name}: integer reference, {len(x)} events x {REPEATS}, one core: median "
          f"{med:,.0f} ev/s (min {lo:,.0f}, max {hi:,.0f})")
    print(f"  onnxruntime (QCDQ graph of the same network, one thread, same events): median "
          f"{omed:,.0f} ev/s; ratio reference / onnxruntime {med / omed:.1f}x; outputs differ "
          f"on {int(differ.sum())} of {len(x)} events (max |diff| "
          f"{float(np.abs(y_ort - y_ref.reshape(len(x), -1)).max()):.3g})")
    ok = med > omed and not differ.any()
    if name == MODELS[0]:
        met = med >= TARGET_EV_PER_S
        print(f"  target >= {TARGET_EV_PER_S:,} ev/s: {'MET' if met else 'MISSED'}")
        ok = ok and met
    return ok


def bench_csim(name: str = MODELS[0]) -> bool:
    card = load_card(name)
    build = Path("build") / name
    project = build_hls_project(build / "model.qonnx.onnx", Path("hls") / name,
                                io_type=card.hardware.io_type, part=card.hardware.part,
                                clock_ns=card.hardware.clock_ns)
    ref = ReferenceModel(build / "model.qonnx.onnx")
    x = ref.to_graph_layout(np.load(build / "vectors.npz")["x"])
    t0 = time.perf_counter()
    project.predict(x)
    seconds = time.perf_counter() - t0
    met = seconds <= CSIM_TARGET_S
    print(f"{name}: hls4ml C simulation of {len(x)} vectors (compiled library"
          f"{', from cache' if project.from_cache else ''}): {seconds:.1f} s; target <= "
          f"{CSIM_TARGET_S:g} s: {'MET' if met else 'MISSED'}")
    return met


def bench_stream(name: str = MODELS[0]) -> None:
    """Peak memory of `trigkit predict` streaming a file of a million events."""
    events = Path("build") / ".bench" / f"mixed_{STREAM_EVENTS}.h5"
    if not events.is_file():
        events.parent.mkdir(parents=True, exist_ok=True)
        write_h5(events, SimConfig(), "mixed", STREAM_EVENTS, 11)
    out = events.with_name("scores.npz")
    out.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("trigkit")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "predict", "--model", name, "--input", str(events), "--out",
                    str(out), "--exact", "--no-progress"], check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{name}: trigkit predict --exact on {STREAM_EVENTS:,} events "
          f"({events.stat().st_size / 2**20:.0f} MB file, {STREAM_EVENTS * 9 * 384 / 2**30:.1f} "
          f"GB of hit images): {seconds:.0f} s including the input check, peak RSS "
          f"{rss:,.0f} MB (streamed in chunks)")


def main() -> int:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    ok = all([bench_model(name) for name in MODELS])
    if (Path("build") / MODELS[0] / "model.qonnx.onnx").is_file():
        ok = bench_csim() and ok
        bench_stream()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
