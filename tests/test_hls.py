"""hls4ml C simulation of a tiny ternary conv net: bit-exact with QONNX and Brevitas, derived
precisions, refusals, cache. One model, compiled once per session (about 15 s on 2 cores)."""

import copy
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import torch
from onnx import helper

from trigkit.core.card import ModelCard
from trigkit.core.config import from_dict
from trigkit.core.errors import TrigkitError
from trigkit.firmware.export import brevitas_to_qonnx, clean_qonnx
from trigkit.firmware.hls import build_hls_project, built_here
from trigkit.firmware.hls_precision import (
    check_hls_compatible,
    hls_config_from_qonnx,
    iter_precisions,
)
from trigkit.learn.models import build_model

ROWS, COLS = 9, 48
CARD = {
    "name": "tiny", "task": "classification",
    "data": {"input_shape": [ROWS, COLS]},
    "architecture": {"eta_pool": 2, "channels": [4], "pool": [1, 2], "dense": [8]},
    "quant": {"weights": "ternary", "weight_scale": 0.25, "act_bits": 3},
}


def _qonnx_outputs(mw, x_nhwc: np.ndarray, full: bool = False):
    from qonnx.core.onnx_exec import execute_onnx

    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    outs = [execute_onnx(mw, {iname: x_nhwc[i:i + 1]}, return_full_exec_context=full)
            for i in range(len(x_nhwc))]
    return outs if full else np.concatenate([o[oname] for o in outs])


def _edge_cases() -> np.ndarray:
    imgs = [np.zeros((ROWS, COLS)), np.ones((ROWS, COLS))]
    for r in range(ROWS):
        for c in (0, 1, COLS - 2, COLS - 1):
            img = np.zeros((ROWS, COLS))
            img[r, c] = 1
            imgs.append(img)
    for c in (0, COLS - 1):
        img = np.zeros((ROWS, COLS))
        img[:, c] = 1
        imgs.append(img)
    for r in (0, ROWS - 1):
        img = np.zeros((ROWS, COLS))
        img[r, :] = 1
        imgs.append(img)
    checker = np.add.outer(np.arange(ROWS), np.arange(COLS)) % 2
    imgs += [checker, 1 - checker]
    return np.stack(imgs)[:, None].astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A briefly trained tiny ternary conv net, its QONNX export, references and C simulation."""
    torch.manual_seed(0)
    card = from_dict(ModelCard, CARD)
    model = build_model(card)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(60):  # give the weights and the activation scales something to do
        x = (torch.rand(64, 1, ROWS, COLS) < 0.02 + 0.2 * torch.rand(64, 1, 1, 1)).float()
        target = x.sum((1, 2)).reshape(64, 3, -1).sum(-1).argmax(1)
        loss = torch.nn.functional.cross_entropy(4 * model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    root = tmp_path_factory.mktemp("hls")
    onnx_path = root / "tiny.onnx"
    mw = brevitas_to_qonnx(model, x[:1], onnx_path)

    g = torch.Generator().manual_seed(1)
    density = 0.01 + 0.3 * torch.rand(320, 1, 1, 1, generator=g)
    x_rand = (torch.rand(320, 1, ROWS, COLS, generator=g) < density).float()
    x_all = torch.cat([x_rand, torch.from_numpy(_edge_cases())])
    with torch.no_grad():
        y_brevitas = model(x_all).numpy().astype(np.float64)
    x_nhwc = x_all.numpy().transpose(0, 2, 3, 1)
    y_qonnx = _qonnx_outputs(mw, x_nhwc)

    t0 = time.perf_counter()
    project = build_hls_project(onnx_path, root / "prj", cache_dir=root / "cache")
    seconds = time.perf_counter() - t0
    return {"model": model, "mw": mw, "onnx": onnx_path, "root": root, "x": x_nhwc,
            "y_brevitas": y_brevitas, "y_qonnx": y_qonnx, "project": project,
            "seconds": seconds}


def test_qonnx_matches_brevitas_and_the_model_is_not_trivial(tiny):
    assert np.array_equal(tiny["y_qonnx"], tiny["y_brevitas"])
    ops = [n.op_type for n in tiny["mw"].graph.node]
    assert "BipolarQuant" not in ops and "Gemm" not in ops
    # a meaningful comparison: many different, mostly non-zero outputs
    assert len(np.unique(tiny["y_qonnx"], axis=0)) > 30
    assert np.mean(np.any(tiny["y_qonnx"] != 0, axis=1)) > 0.5


def test_csim_is_bit_exact_with_qonnx_and_brevitas(tiny):
    project = tiny["project"]
    assert not project.from_cache and project.io_type == "io_parallel"
    y = project.predict(tiny["x"])
    assert y.dtype == np.float64 and y.shape == tiny["y_qonnx"].shape
    assert len(y) >= 300 + 40
    assert np.array_equal(y, tiny["y_qonnx"])
    assert np.array_equal(y, tiny["y_brevitas"])
    # one sample without the batch axis
    assert np.array_equal(project.predict(tiny["x"][0]), y[0])


def test_off_grid_inputs_are_quantised_like_qonnx(tiny):
    """The input type carries the input quantiser's rounding and saturation."""
    rng = np.random.default_rng(3)
    vals = np.array([-0.7, 0.3, 0.5, 0.7, 1.5, 2.5, 3.2, 7.0])
    x = rng.choice(vals, size=(12, ROWS, COLS, 1)) * (rng.random((12, ROWS, COLS, 1)) < 0.3)
    assert np.array_equal(tiny["project"].predict(x), _qonnx_outputs(tiny["mw"], x))


def _fixed_range(prec: str) -> tuple[float, float, int]:
    """(min, max, fractional bits) of an hls4ml fixed-point precision string."""
    m = re.fullmatch(r"(u?)fixed<(-?\d+),(-?\d+)(,.*)?>", prec)
    assert m, prec
    unsigned, w, i = m.group(1) == "u", int(m.group(2)), int(m.group(3))
    f = w - i
    if unsigned:
        return 0.0, (2 ** w - 1) * 2.0 ** -f, f
    return -(2 ** (w - 1)) * 2.0 ** -f, (2 ** (w - 1) - 1) * 2.0 ** -f, f


def test_config_has_only_derived_precisions(tiny):
    cfg = tiny["project"].config
    precisions = list(iter_precisions(cfg))
    assert len(precisions) > 20
    for path, prec in precisions:
        assert isinstance(prec, str) and prec != "auto", path
        assert "16,6" not in prec and "18,8" not in prec, (path, prec)
        _fixed_range(prec)  # every precision is a fixed-point type
    for name, layer in cfg["LayerName"].items():
        if "table_t" in layer:
            assert layer["table_t"] == layer["Precision"]["result"], name
    # nothing in the generated C++ fell back to a default either
    fw = tiny["project"].out_dir / "firmware"
    for f in (fw / "defines.h", fw / "parameters.h"):
        text = f.read_text()
        assert "<16,6>" not in text and "<18,8>" not in text, f
    assert "typedef ap_ufixed<2,2,AP_RND_CONV,AP_SAT,0> input_t;" in (fw / "defines.h").read_text()


def test_accumulators_hold_every_value_exactly(tiny):
    """Worst-case bound of every Conv/MatMul, and every intermediate value seen, fit the types."""
    mw, cfg = tiny["mw"], tiny["project"].config["LayerName"]
    producers = {n.output[0]: n for n in mw.graph.node}
    graph_in = mw.graph.input[0].name
    ctx = _qonnx_outputs(mw, tiny["x"][::10], full=True)
    for node in mw.graph.node:
        if node.op_type in ("Conv", "MatMul"):
            quant_w = producers[node.input[1]]
            w = ctx[0][quant_w.output[0]].astype(np.float64)
            src = producers[node.input[0]]
            while src.op_type not in ("Quant", "Relu", "Conv", "MatMul"):
                src = producers[src.input[0]]  # MaxPool / Flatten keep the type
            in_lo, in_hi, in_f = _fixed_range(cfg[src.name]["Precision"]["result"])
            w = w.reshape(w.shape[0], -1) if node.op_type == "Conv" else w.T
            bound_hi = np.maximum(w * in_lo, w * in_hi).sum(1).max()
            bound_lo = np.minimum(w * in_lo, w * in_hi).sum(1).min()
            for key in ("accum", "result"):
                lo, hi, f = _fixed_range(cfg[node.name]["Precision"][key])
                assert lo <= bound_lo and bound_hi <= hi, (node.name, key)
                w_f = _fixed_range(cfg[quant_w.name]["Precision"]["result"])[2]
                assert f >= in_f + w_f, (node.name, key)
        if node.name in cfg and node.input[0] != graph_in:
            lo, hi, f = _fixed_range(cfg[node.name]["Precision"]["result"])
            for c in ctx:
                v = c[node.output[0]]
                assert v.min() >= lo and v.max() <= hi, node.name
                assert np.all(v * 2.0 ** f == np.round(v * 2.0 ** f)), node.name


def test_second_build_comes_from_the_cache(tiny, tmp_path):
    again = build_hls_project(tiny["onnx"], tiny["project"].out_dir)
    assert again.from_cache and again.build_seconds == 0.0
    assert again.graph_hash == tiny["project"].graph_hash
    assert np.array_equal(again.predict(tiny["x"][:50]), tiny["y_qonnx"][:50])
    # hls4ml's own predict on the cached library, without compiling
    hm = again.hls4ml_model()
    assert np.array_equal(hm.predict(np.ascontiguousarray(tiny["x"][:20], dtype=np.float64)),
                          tiny["y_qonnx"][:20])
    # a fresh directory is filled from cache_dir instead of compiling again
    copy_ = build_hls_project(tiny["onnx"], tmp_path / "prj", cache_dir=tiny["root"] / "cache")
    assert copy_.from_cache
    assert np.array_equal(copy_.predict(tiny["x"][:50]), tiny["y_qonnx"][:50])


def test_a_library_not_built_here_is_rebuilt_never_loaded(tiny, tmp_path):
    """A project handed over with a stamp that matches but a library this machine did not
    compile (here: one whose loading would write a marker file) is rebuilt, not loaded."""
    src = tmp_path / "evil.c"
    marker = tmp_path / "loaded"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void hit(void) {\n'
                   f'  FILE *f = fopen("{marker}", "w"); if (f) fclose(f);\n}}\n')
    handed = tmp_path / "handed"
    shutil.copytree(tiny["project"].out_dir, handed)
    library = handed / tiny["project"].library.relative_to(tiny["project"].out_dir)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(src)], check=True)
    assert library.is_file() and not built_here(library, tiny["project"].graph_hash)
    project = build_hls_project(tiny["onnx"], handed)
    assert not marker.exists()
    assert not project.from_cache  # rebuilt from the ONNX graph
    assert np.array_equal(project.predict(tiny["x"][:50]), tiny["y_qonnx"][:50])
    assert build_hls_project(tiny["onnx"], handed).from_cache  # now it was built here


def test_predict_refuses_wrong_shapes(tiny):
    with pytest.raises(TrigkitError, match="NHWC"):
        tiny["project"].predict(np.zeros((2, 1, ROWS, COLS)))


# --- refusals ------------------------------------------------------------------------------


def _node(mw, op_type: str, index: int = 0):
    return [n for n in mw.graph.node if n.op_type == op_type][index]


def _weight_quant(mw, consumer: str):
    conv = _node(mw, consumer)
    return next(n for n in mw.graph.node if n.output[0] == conv.input[1])


def test_non_power_of_two_scale_is_refused(tmp_path):
    import brevitas.nn as qnn
    from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPoint
    from brevitas.quant.ternary import SignedTernaryWeightPerTensorConst

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, bit_width=2,
                          return_quant_tensor=True),
        qnn.QuantLinear(6, 3, weight_quant=SignedTernaryWeightPerTensorConst, bias=False),
    )
    mw = brevitas_to_qonnx(model, torch.rand(1, 6))
    name = _weight_quant(mw, "MatMul").name
    with pytest.raises(TrigkitError, match=rf"'{name}'.*0\.1 is not a power of two"):
        check_hls_compatible(mw)
    with pytest.raises(TrigkitError, match="power of two"):
        hls_config_from_qonnx(mw)


def _gemm_graph():
    from qonnx.core.modelwrapper import ModelWrapper

    q = "qonnx.custom_op.general"
    nodes = [
        helper.make_node("Quant", ["x", "s1", "z", "b2"], ["xq"], name="Quant_in", domain=q,
                         signed=0, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["w", "s025", "z", "b2"], ["wq"], name="Quant_w", domain=q,
                         signed=1, narrow=1, rounding_mode="ROUND"),
        helper.make_node("Gemm", ["xq", "wq"], ["y"], name="Gemm_0"),
    ]
    inits = {"s1": 1.0, "s025": 0.25, "z": 0.0, "b2": 2.0}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 6])],
        [helper.make_tensor_value_info("y", 1, [1, 3])],
        [helper.make_tensor(k, 1, [], [v]) for k, v in inits.items()]
        + [helper.make_tensor("w", 1, [6, 3], np.linspace(-0.3, 0.3, 18).tolist())])
    return ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]))


def test_gemm_is_refused_with_the_gemm_to_matmul_hint():
    mw = _gemm_graph()
    with pytest.raises(TrigkitError, match="'Gemm_0'.*GemmToMatMul"):
        check_hls_compatible(mw)


def _mutated(tiny):
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(copy.deepcopy(tiny["mw"].model))


def test_checker_refusals_name_the_node_and_the_fix(tiny):
    mw = _mutated(tiny)
    check_hls_compatible(mw)
    q = _weight_quant(mw, "Conv")
    mw.set_initializer(q.input[1], np.full((4, 1, 1, 1), 0.25, np.float32))
    with pytest.raises(TrigkitError, match=rf"'{q.name}'.*per-channel.*fix: use a per-tensor"):
        check_hls_compatible(mw)

    mw = _mutated(tiny)
    q = _weight_quant(mw, "MatMul")
    mw.set_initializer(q.input[2], np.array(1.0, np.float32))
    with pytest.raises(TrigkitError, match=rf"'{q.name}'.*zero point"):
        check_hls_compatible(mw)

    mw = _mutated(tiny)  # float weights: the Conv reads the initializer directly
    conv, q = _node(mw, "Conv"), _weight_quant(mw, "Conv")
    conv.input[1] = q.input[0]
    with pytest.raises(TrigkitError, match=r"'Conv_0'.*float \(not fed through a Quant node\)"):
        check_hls_compatible(mw)

    for op, hint in (("Trunc", "MaxPool"), ("MultiThreshold", "FINN"),
                     ("QuantizeLinear", "export_qonnx"), ("Add", "Brevitas"),
                     ("Softmax", "supported ops")):
        mw = _mutated(tiny)
        relu = _node(mw, "Relu")
        relu.op_type = op
        with pytest.raises(TrigkitError, match=rf"'{relu.name}' \({op}.*fix: .*{hint}"):
            check_hls_compatible(mw)


def test_unsigned_one_bit_input_bipolar_quant_is_refused(tmp_path):
    """Brevitas exports an unsigned 1-bit quantiser as BipolarQuant (+-1), which is wrong for
    0/1 hits: QONNX then disagrees with Brevitas, and the checker refuses the graph."""
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant.base import PerTensorConstScaling2bit, UintQuant
    from brevitas.quant.solver import ActQuantSolver
    from brevitas.quant.ternary import SignedTernaryWeightPerTensorConst
    from qonnx.core.modelwrapper import ModelWrapper

    class Binary1Bit(UintQuant, PerTensorConstScaling2bit, ActQuantSolver):
        bit_width = 1
        scaling_const = 1.0
        max_val = 1.0
        min_val = 0.0

    class Ternary(SignedTernaryWeightPerTensorConst):
        scaling_const = 0.25

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Binary1Bit, return_quant_tensor=True),
        qnn.QuantConv2d(1, 2, (3, 3), weight_quant=Ternary, bias=False),
        torch.nn.Flatten(),
    )
    torch.nn.init.uniform_(model[1].weight, -0.4, 0.4)
    model.eval()
    x = (torch.rand(12, 1, 5, 6) < 0.3).float()
    with torch.no_grad():
        y = model(x).numpy()
    x_nhwc = x.numpy().transpose(0, 2, 3, 1)

    export_qonnx(model, input_t=x[:1], export_path=str(tmp_path / "raw.onnx"), dynamo=False)
    plain = clean_qonnx(ModelWrapper(str(tmp_path / "raw.onnx")))
    assert "BipolarQuant" in [n.op_type for n in plain.graph.node]
    assert not np.array_equal(_qonnx_outputs(plain, x_nhwc), y)  # every hit/no-hit -> +1
    with pytest.raises(TrigkitError, match="BipolarQuant.*unsigned 2-bit"):
        check_hls_compatible(plain)


@pytest.mark.slow
def test_io_stream_is_bit_exact_too(tiny, tmp_path):
    """io_stream is selectable for the conv net (a second compile of the tiny model)."""
    project = build_hls_project(tiny["onnx"], tmp_path / "stream", io_type="io_stream")
    assert project.io_type == "io_stream" and not project.from_cache
    assert np.array_equal(project.predict(tiny["x"]), tiny["y_qonnx"])
