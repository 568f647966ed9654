"""RTL stage on a tiny trained ternary CNN: da4ml trace == reference, Verilog, cocotb testbenches.

The model (9 x 64 input) is trained, exported, traced, written and simulated once per test session
(shared between pytest-xdist workers through a lock file), which takes about a minute or two on
two cores, most of it the Verilator build.
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from trigkit.core.errors import TrigkitError
from trigkit.core.paths import COMMON_HDL
from trigkit.firmware.cocotb_runner import run_cocotb, verilator_env
from trigkit.firmware.layout import pack_inputs, unpack_outputs
from trigkit.firmware.reference import IntegerGraph, ReferenceModel, _Op
from trigkit.firmware.rtl import count_trace_mismatches, trace_graph, write_rtl

NAME = "tiny_rtl"
CARD = {
    "name": NAME, "task": "classification",
    "data": {"events": 2000, "seed": 5, "split": [0.6, 0.2, 0.2], "input_shape": [9, 64],
             "sim": {"detector": {"n_eta_bins": 64}}},
    "architecture": {"eta_pool": 8, "channels": [4], "pool": [1, 2], "dense": [8]},
    "quant": {"weights": "ternary", "weight_scale": 0.25, "act_bits": 3},
    "training": {"epochs": 2, "batch_size": 64, "lr": 5e-3, "threads": 1},
    "hardware": {"clock_ns": 3.125, "latency_cutoff_ns": 100},
}


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(root: Path) -> dict:
    from trigkit.core.card import load_card
    from trigkit.firmware.export import run_export
    from trigkit.learn.train import Trainer, load_trained_model

    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / f"{NAME}.yaml").write_text(yaml.safe_dump(CARD))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        card = load_card(NAME)
        Trainer(card, progress=False, verbose=False).fit()
        run_export(card, load_trained_model(card), root / "build" / NAME, n_vectors=1000)
    finally:
        os.chdir(cwd)
    onnx_path = root / "build" / NAME / "model.qonnx.onnx"
    info = write_rtl(NAME, onnx_path, root / "hw" / NAME, clock_ns=3.125, latency_cutoff_ns=100,
                     input_bits=1)  # hit images: one bit per strip (the quantiser has 2)
    sim = run_cocotb(NAME, root / "hw" / NAME, root / "build" / NAME / "vectors.npz",
                     root / "sim_build")
    return {"info": info, "sim": sim}


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """Everything built once per session, shared by the xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "trigkit_rtl_design"
    done = root / "done.json"
    with _locked(base / "trigkit_rtl_design.lock"):
        if not done.is_file():
            if root.exists():
                shutil.rmtree(root)
            done.parent.mkdir(parents=True)
            done.write_text(json.dumps(_build(root)))
    return root, json.loads(done.read_text())


def _paths(root: Path):
    return (root / "build" / NAME / "model.qonnx.onnx", root / "build" / NAME / "vectors.npz",
            root / "hw" / NAME)


def test_trace_equals_reference_on_all_vectors(design):
    root, _ = design
    onnx_path, vectors, _ = _paths(root)
    ref = ReferenceModel(onnx_path)
    comb, out_exp = trace_graph(ref.graph)
    v = np.load(vectors)
    assert out_exp == int(v["y_exp"])
    x = ref.to_graph_layout(v["x"]).reshape(len(v["x"]), -1).astype(np.float64)
    y = comb.predict(x)
    assert len(y) >= 1000
    np.testing.assert_array_equal(y, v["y_int"])
    assert count_trace_mismatches(comb, ref, vectors) == (0, len(y))
    assert len(np.unique(v["y_int"], axis=0)) > 20  # a meaningful comparison


def test_verilog_and_rtl_json_are_written(design):
    root, built = design
    _, _, hw = _paths(root)
    info = json.loads((hw / "rtl.json").read_text())
    assert info == built["info"]
    for src in info["sources"]:
        assert (hw / src).is_file(), src
    assert (hw / "src" / "trigkit_core.v").is_file()
    assert (COMMON_HDL / "trigkit_top.v").is_file()
    assert info["ii_cycles"] == 1 and info["clock_ns"] == 3.125
    assert info["latency_cycles"] == info["da4ml_stages"] + 1 > 1
    assert info["parameters"]["LATENCY"] == info["latency_cycles"]
    assert info["parameters"]["IN_BITS"] == 9 * 64 == info["input"]["n"]
    assert info["parameters"]["OUT_BITS"] == 3 * info["output"]["word_bits"]
    assert info["output"]["exp"] == -3 and info["trace_vs_ref"] == 0
    assert info["within_budget"] and info["latency_ns"] <= 100


def test_cocotb_stream_is_bit_exact_with_ii_1(design):
    root, built = design
    sim, info = built["sim"], built["info"]
    assert sim["passed"], sim["tests"]
    assert sim["vectors"] >= 1000
    assert sim["rtl_vs_ref"] == 0
    assert sim["ii_cycles"] == 1
    assert sim["latency_cycles"] == info["latency_cycles"] > 0
    assert sim["clock_ns"] == 3.125
    assert sim["tests"]["stream"]["spurious_valid"] == 0


def test_cocotb_random_gaps_and_reset(design):
    _, built = design
    tests = built["sim"]["tests"]
    gaps, reset = tests["random_gaps"], tests["reset_mid_stream"]
    assert gaps["mismatches"] == 0 and gaps["spurious_valid"] == 0
    assert gaps["compared"] == gaps["vectors"] > 0 and gaps["idle_cycles"] > 0
    assert reset["mismatches"] == 0 and reset["spurious_valid"] == 0
    assert reset["valid_during_flush"] == 0 and reset["dropped"] > 0
    assert reset["compared"] == reset["vectors"] > 0


def test_second_run_reuses_the_build(design):
    root, _ = design
    _, vectors, hw = _paths(root)
    res = run_cocotb(NAME, hw, vectors, root / "sim_build", tests=["stream"], max_vectors=50)
    assert res["built"] is False and res["passed"] and res["rtl_vs_ref"] == 0
    assert res["vectors"] == 50


def test_wrong_top_parameters_do_not_elaborate(design):
    root, built = design
    _, _, hw = _paths(root)
    info = built["info"]
    params = dict(info["parameters"], LATENCY=info["latency_cycles"] + 1)
    env = os.environ | verilator_env()
    cmd = (["verilator", "--lint-only", "--top-module", "trigkit_top"]
           + [f"-G{k}={v}" for k, v in params.items()]
           + [str(COMMON_HDL / "trigkit_top.v")] + [str(hw / s) for s in info["sources"]])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode != 0
    assert "differ from" in res.stderr


def test_wrong_vectors_are_refused(design, tmp_path):
    root, _ = design
    onnx_path, vectors, _ = _paths(root)
    v = dict(np.load(vectors))
    v["y_int"] = v["y_int"].copy()
    v["y_int"][7, 0] += 1
    bad = tmp_path / "vectors.npz"
    np.savez(bad, **{**v, "y": v["y"]})  # y no longer equals y_int * 2**y_exp: damaged
    with pytest.raises(TrigkitError, match="y differs from y_int"):
        write_rtl(NAME, onnx_path, tmp_path / "hw", vectors_path=bad)
    v["y"] = v["y_int"] * 2.0 ** v["y_exp"]  # consistent, but not what the network computes
    np.savez(bad, **v)
    with pytest.raises(TrigkitError, match="differs from the reference on 1 of"):
        write_rtl(NAME, onnx_path, tmp_path / "hw", vectors_path=bad)
    assert not (tmp_path / "hw").exists()


def test_unsupported_op_is_an_error_naming_the_node(design):
    root, _ = design
    onnx_path, _, _ = _paths(root)
    graph = ReferenceModel(onnx_path).graph
    op = graph.ops[1]
    graph.ops[1] = _Op("Softmax", "node Softmax_7 (Softmax)", op.inputs, op.output, {})
    with pytest.raises(TrigkitError, match=r"Softmax_7 .*not supported by the RTL tracer"):
        trace_graph(graph)
    graph = ReferenceModel(onnx_path).graph
    graph.ops.insert(0, _Op("Transpose", "node Transpose_9 (Transpose)", [graph.input_name],
                            graph.input_name, {"perm": [1, 0, 2, 3]}))
    with pytest.raises(TrigkitError, match="Transpose_9.*batch axis"):
        trace_graph(graph)


def _rounding_graph(relu: bool) -> IntegerGraph:
    """x (1, 6) 4-bit unsigned -> MatMul with ternary weights (scale 1/2) -> Quant with scale 2:
    a shift by 2 with many ties, negative values and clipping (signed narrow 4 bits); with
    ``relu`` then Relu -> Quant to an unsigned 3-bit grid 4x finer, which clips at the top."""
    from qonnx.core.modelwrapper import ModelWrapper

    rng = np.random.default_rng(3)
    w = rng.integers(-1, 2, size=(6, 5)).astype(np.float32) * 0.5
    w[:, 0] = 0.5  # all positive weights: large sums, clipped
    c = numpy_helper.from_array
    inits = [c(np.float32(1.0), "s1"), c(np.float32(0.0), "z"), c(np.float32(4.0), "b4"),
             c(w, "w"), c(np.float32(0.5), "sw"), c(np.float32(2.0), "b2"),
             c(np.float32(2.0), "s2"), c(np.float32(0.5), "s3"), c(np.float32(3.0), "b3")]
    nodes = [
        helper.make_node("Quant", ["x", "s1", "z", "b4"], ["xq"], domain="qonnx.custom_op.general",
                         signed=0, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["w", "sw", "z", "b2"], ["wq"], domain="qonnx.custom_op.general",
                         signed=1, narrow=1, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["xq", "wq"], ["acc"]),
        helper.make_node("Quant", ["acc", "s2", "z", "b4"], ["q1"],
                         domain="qonnx.custom_op.general", signed=1, narrow=1,
                         rounding_mode="ROUND"),
    ]
    if relu:
        nodes += [helper.make_node("Relu", ["q1"], ["r1"]),
                  helper.make_node("Quant", ["r1", "s3", "z", "b3"], ["y"],
                                   domain="qonnx.custom_op.general", signed=0, narrow=0,
                                   rounding_mode="ROUND")]
    else:
        nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "rounding", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return IntegerGraph(ModelWrapper(helper.make_model(graph)))


@pytest.mark.parametrize("relu", [False, True])
def test_round_half_to_even_and_clipping_are_exact(relu):
    graph = _rounding_graph(relu)
    comb, out_exp = trace_graph(graph, input_bits=4)
    x = np.random.default_rng(0).integers(0, 16, size=(20000, 6))
    ref = graph.run(x.astype(np.float64))
    assert out_exp == ref.exp == (-1 if relu else 1)
    np.testing.assert_array_equal(comb.predict(x.astype(np.float64)), ref.ints)
    # the test covers what it claims: ties, negative ties, clipping at both ends
    acc = x @ graph.constants["wq"].ints
    assert np.any(acc % 4 == 2) and np.any((acc < 0) & (acc % 4 == 2))
    assert acc.max() > 4 * 7 and acc.min() < -4 * 7
    assert ref.ints.max() == 7 and ref.ints.min() == (0 if relu else -7)


def test_pack_and_unpack_layouts():
    x = np.random.default_rng(1).integers(0, 4, size=(5, 13))
    words = pack_inputs(x, 2)
    for row, word in zip(x, words, strict=True):
        assert [(word >> (2 * p)) & 3 for p in range(13)] == list(row)
    with pytest.raises(TrigkitError, match="2-bit unsigned"):
        pack_inputs(x + 4, 2)
    layout = {"n": 3, "word_bits": 5, "signed": True, "word_shift": 1}
    y = np.array([[-16, 0, 15], [3, -1, -7]])
    raw = [sum((int(v) & 31) << (5 * j) for j, v in enumerate(r)) for r in y]
    np.testing.assert_array_equal(unpack_outputs(raw, layout), y * 2)



def test_yosys_synthesises_the_design(design):
    """Open synthesis of the tiny design: plausible resources beside da4ml's estimate."""
    from trigkit.firmware.synth import synth_yosys

    root, built = design
    _, _, hw = _paths(root)
    res = synth_yosys(hw, log_path=root / "yosys.log")
    estimate = built["info"]["cost_lut_estimate"]
    assert res["lut"] > 0 and res["ff"] > 0 and res["logic_depth"] > 0
    assert 0.5 * estimate < res["lut"] < 2.0 * estimate  # Yosys' 7-series mapping vs da4ml
    assert res["dsp"] == 0 and res["bram"] == 0  # ternary weights need no multipliers
