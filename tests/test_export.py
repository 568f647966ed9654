"""Export stage on a tiny trained ternary model: QONNX, integer reference, refusals."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

import trigkit
from trigkit.core.card import load_card
from trigkit.core.errors import TrigkitError
from trigkit.firmware.export import export_qonnx, run_export
from trigkit.firmware.fixedpoint import round_shift
from trigkit.firmware.intkernels import int8_matmul, requantise
from trigkit.firmware.reference import IntegerGraph, ReferenceModel
from trigkit.l0.data import edge_case_images
from trigkit.learn.train import Trainer, load_trained_model

TINY = {
    "name": "tiny_tnn", "task": "classification",
    "data": {"events": 3000, "seed": 5, "split": [0.6, 0.2, 0.2]},
    "architecture": {"eta_pool": 8, "channels": [4], "pool": [1, 2], "dense": [8]},
    "quant": {"weights": "ternary", "weight_scale": 0.25, "act_bits": 3},
    "training": {"epochs": 2, "batch_size": 64, "lr": 5e-3, "threads": 1},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "models").mkdir()
    (root / "models" / "tiny_tnn.yaml").write_text(yaml.safe_dump(TINY))
    cwd = Path.cwd()
    import os

    os.chdir(root)
    try:
        card = load_card("tiny_tnn")
        Trainer(card, progress=False, verbose=False).fit()
        model = load_trained_model(card)
        result = run_export(card, model, root / "build" / "tiny_tnn", n_vectors=1500)
    finally:
        os.chdir(cwd)
    return root, card, model, result


def test_export_is_bit_exact_on_simulated_and_edge_vectors(exported):
    root, card, _, result = exported
    be = result["bit_exact"]
    assert be["vectors"] == 1500 + len(edge_case_images((9, 384)))
    assert be["qonnx_vs_ref"] == 0 and be["brevitas_vs_ref"] == 0
    v = np.load(result["vectors"])
    assert v["x"].shape == (be["vectors"], 9, 384) and v["x"].dtype == np.uint8
    np.testing.assert_array_equal(v["y"], v["y_int"] * 2.0 ** int(v["y_exp"]))
    # a meaningful comparison: the trained network gives many different outputs
    assert len(np.unique(v["y"], axis=0)) > 50


def test_graph_is_channels_last_quantised_and_supported(exported):
    _, _, _, result = exported
    g = onnx.load(str(result["onnx"])).graph
    ops = [n.op_type for n in g.node]
    assert "Gemm" not in ops and "BipolarQuant" not in ops
    assert [d.dim_value for d in g.input[0].type.tensor_type.shape.dim][1:] == [9, 384, 1]


def test_reference_load_and_predict_api(exported, tmp_path):
    root, card, model, result = exported
    ref = trigkit.load(root / "build" / "tiny_tnn")
    v = np.load(result["vectors"])
    np.testing.assert_array_equal(ref.predict(v["x"][:300]), v["y"][:300])
    # HDF5 input
    import h5py

    path = tmp_path / "ev.h5"
    with h5py.File(path, "w") as f:
        f["hits"] = v["x"][:300]
    np.testing.assert_array_equal(ref.predict(path), v["y"][:300])
    p = ref.predict_proba(v["x"][:10])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    with pytest.raises(TrigkitError, match="do not fit the model input"):
        ref.predict(np.zeros((2, 8, 384), np.uint8))


def test_predict_command(exported, tmp_path):
    root, _, _, result = exported
    import h5py

    v = np.load(result["vectors"])
    with h5py.File(root / "ev.h5", "w") as f:
        f["hits"] = v["x"][:100]
    exe = str(Path(sys.executable).with_name("trigkit"))
    res = subprocess.run([exe, "predict", "--model", "tiny_tnn", "--input", "ev.h5",
                          "--out", "p.npz"], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = np.load(root / "p.npz")
    np.testing.assert_array_equal(out["y"], v["y"][:100])


def test_round_shift_is_half_to_even():
    x = np.arange(-1000, 1001, dtype=np.int64)
    for k in range(0, 6):
        np.testing.assert_array_equal(round_shift(x, k), np.round(x / 2.0**k).astype(np.int64))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_requantise_equals_round_shift_and_clip(dtype):
    info = np.iinfo(dtype)
    x = np.concatenate([np.arange(-300, 301), [info.min, info.min + 1, info.max - 1, info.max]])
    x = np.clip(x, info.min, info.max).astype(dtype).reshape(-1, 1)
    for k in range(1, 7):
        for lo, hi in ((0, 7), (-8, 7), (-128, 127)):
            want = np.clip(round_shift(x.astype(np.int64), k), lo, hi)
            got = requantise(x, k, lo, hi, np.int8)
            assert got.dtype == np.int8
            np.testing.assert_array_equal(got, want)


def test_int8_matmul_is_exact():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (257, 37)).astype(np.int8)
    w = rng.integers(-128, 128, (37, 5)).astype(np.int8)
    np.testing.assert_array_equal(int8_matmul(x, w), x.astype(np.int64) @ w.astype(np.int64))


def test_relu_before_unsigned_quant_is_folded_exactly(exported):
    """The reference leaves out a Relu feeding only unsigned Quants; the result is the same
    as running every op (the tracer's list keeps the Relu)."""
    _, _, _, result = exported
    ref = ReferenceModel(result["onnx"])
    graph = ref.graph
    assert sum(op.kind == "Relu" for op in graph.plan) < sum(op.kind == "Relu" for op in graph.ops)
    x = ref.to_graph_layout(np.load(result["vectors"])["x"][:200])
    folded = graph.run(x).ints
    graph.plan = graph.ops
    np.testing.assert_array_equal(graph.run(x).ints, folded)


def _stock_ternary_model():
    """A Brevitas model with the stock ternary quantiser (scale 0.1, not a power of two)."""
    import brevitas.nn as qnn
    from brevitas.quant.ternary import SignedTernaryWeightPerTensorConst

    return torch.nn.Sequential(
        torch.nn.Flatten(),
        qnn.QuantLinear(9 * 384, 3, weight_quant=SignedTernaryWeightPerTensorConst, bias=False),
    )


def test_non_power_of_two_model_is_refused_naming_the_node(exported, tmp_path):
    _, card, _, _ = exported
    from trigkit.core.config import from_dict

    mlp = from_dict(type(card), {**TINY, "architecture": {"kind": "mlp", "dense": []}})
    with pytest.raises(TrigkitError, match=r"node .*Quant.*scale 0\.1 is not a power of two"):
        export_qonnx(mlp, _stock_ternary_model(), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_float_model_and_unsupported_ops_are_refused(exported, tmp_path):
    _, card, _, _ = exported
    from trigkit.core.config import from_dict

    f32 = from_dict(type(card), {**TINY, "quant": {"weights": "float"}})
    with pytest.raises(TrigkitError, match="float model"):
        export_qonnx(f32, torch.nn.Identity(), tmp_path / "f.onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
    w = onnx.numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Gemm", ["x", "w"], ["y"])], "g",
                                   [x], [y], [w])
    from qonnx.core.modelwrapper import ModelWrapper

    with pytest.raises(TrigkitError, match="Gemm.*GemmToMatMul"):
        IntegerGraph(ModelWrapper(onnx.helper.make_model(graph)))
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                   [x], [y], [w])
    with pytest.raises(TrigkitError, match="not fed through a Quant node"):
        IntegerGraph(ModelWrapper(onnx.helper.make_model(graph)))


def test_corrupt_onnx_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.qonnx.onnx"
    bad.write_bytes(b"this is not onnx")
    with pytest.raises(TrigkitError, match="not a readable ONNX file"):
        ReferenceModel(bad)
    with pytest.raises(TrigkitError, match="not found; export the model first"):
        ReferenceModel(tmp_path / "missing.onnx")


def test_byte_inputs_out_of_range_are_clipped_like_float_inputs(exported):
    """Hit images arrive as uint8: inside the input quantiser's range they are read as they
    are (no copy), outside it they are clipped exactly as the same values given as floats."""
    _, _, _, result = exported
    ref = ReferenceModel(result["onnx"])
    x = ref.to_graph_layout(np.load(result["vectors"])["x"][:50]).astype(np.uint8)
    for codes in (x, x * np.uint8(5)):  # 0/1, and 0/5 (above the 2-bit range)
        np.testing.assert_array_equal(ref.graph.run(codes).ints,
                                      ref.graph.run(codes.astype(np.float32)).ints)
