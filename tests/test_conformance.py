"""Conformance of the exact paths on Brevitas models written the way its users write them.

Every supported op / attribute combination (``brevitas_zoo.supported_models``): the integer
reference equals qonnx's executor and Brevitas on 256 random inputs on the input grid (0
mismatches), and da4ml's traced logic equals the reference; a subset goes through the hls4ml C
simulation and through Verilog + cocotb. Every refused pattern (``refused_models``) is refused
before any output, by name, with its reason and fix.
"""

import numpy as np
import pytest
import torch

from brevitas_zoo import finish, grid_codes, refused_models, supported_models
from trigkit.core.errors import TrigkitError
from trigkit.firmware.cocotb_runner import run_cocotb
from trigkit.firmware.export import brevitas_to_qonnx, count_mismatches, qonnx_execute
from trigkit.firmware.hls import build_hls_project
from trigkit.firmware.hls_precision import check_hls_compatible
from trigkit.firmware.reference import ReferenceModel
from trigkit.firmware.rtl import trace_reference, write_rtl
from trigkit.firmware.trace import count_code_mismatches

N_INPUTS = 256
SUPPORTED = supported_models()
REFUSED = refused_models()
#: Through hls4ml's C simulation (about 10 s of compilation each).
HLS_SUBSET = ("mlp_int16_bias", "conv_pad_stride_bias", "conv1d_maxpool1d", "residual_add",
              "preprocessing", "float_tail", "batchnorm_conv")
#: Exact in the reference and the RTL, refused by the hls4ml path (by name, with this reason).
HLS_REFUSED = {"average_pool": r"AveragePool.*NCHW.*fix: use MaxPool for hls4ml"}
#: Through Verilog, Verilator and the cocotb testbenches.
RTL_SUBSET = ("mlp_int16_bias", "preprocessing", "batchnorm_mlp")


def _export(name: str, tmp_path):
    build, shape = SUPPORTED[name]
    model = finish(build())
    onnx = tmp_path / f"{name}.onnx"
    brevitas_to_qonnx(model, torch.zeros(1, *shape), onnx)
    ref = ReferenceModel(onnx)
    q = ref.graph.input_quant.attrs
    x = grid_codes(shape, N_INPUTS, q["bits"], bool(q["signed"])) * 2.0 ** q["exp"]
    if name == "preprocessing":  # any floats: the graph quantises 2 x - 1 itself
        x = np.random.default_rng(1).uniform(-0.2, 1.2, size=(N_INPUTS, *shape))
    return model, onnx, ref, x.astype(np.float32)


def _brevitas(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float64)


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_supported_pattern_is_exact_in_reference_qonnx_brevitas_and_trace(name, tmp_path):
    model, onnx, ref, x = _export(name, tmp_path)
    if name in HLS_REFUSED:
        with pytest.raises(TrigkitError, match=HLS_REFUSED[name]):
            check_hls_compatible(ref_graph_model(onnx))
    else:
        check_hls_compatible(ref_graph_model(onnx))
    y = ref.predict(x)
    assert np.unique(y.round(6), axis=0).shape[0] > 4, "a constant model tests nothing"
    assert count_mismatches(qonnx_execute(onnx, ref.to_graph_layout(x)), y) == 0
    assert count_mismatches(_brevitas(model, x), y) == 0
    comb, _ = trace_reference(ref, None, None)
    bits, signed = ref.firmware_input_format(None, None)
    codes = ref.graph.input_codes(ref.to_graph_layout(x)) if ref.graph.preprocessing else (
        np.round(ref.to_graph_layout(x) * 2.0**-ref.input_exp).astype(np.int64))
    assert count_code_mismatches(comb, ref, codes, bits, signed) == (0, N_INPUTS)


def ref_graph_model(onnx):
    from qonnx.core.modelwrapper import ModelWrapper

    from trigkit.firmware.reference import firmware_model

    return firmware_model(ModelWrapper(str(onnx)))


@pytest.mark.parametrize("name", HLS_SUBSET)
def test_hls4ml_csim_is_exact(name, tmp_path):
    _, onnx, ref, x = _export(name, tmp_path)
    project = build_hls_project(onnx, tmp_path / "prj")
    y_int, exp = ref.predict_int(x)
    assert count_mismatches(project.predict(ref.hls_input(x)), y_int * 2.0**exp) == 0


@pytest.mark.parametrize("name", RTL_SUBSET)
def test_verilog_is_exact_under_cocotb(name, tmp_path):
    """Written without vectors: checked on generated codes first; then cocotb on codes."""
    _, onnx, ref, x = _export(name, tmp_path)
    info = write_rtl(name, onnx, tmp_path / "hw")
    assert info["trace_vs_ref"] == 0 and info["trace_vectors"] > 300
    assert info["input"]["exp"] == ref.input_exp
    codes = ref.graph.input_codes(ref.to_graph_layout(x)) if ref.graph.preprocessing else (
        np.round(ref.to_graph_layout(x) * 2.0**-ref.input_exp).astype(np.int64))
    y_int, exp = ref.predict_codes(codes)
    vectors = tmp_path / "vectors.npz"
    np.savez(vectors, x=codes.astype(np.int64), y_int=y_int, y_exp=np.int64(exp),
             y=y_int * 2.0**exp)
    res = run_cocotb(name, tmp_path / "hw", vectors, tmp_path / "sim", gap_vectors=64,
                     reset_vectors=32)
    assert res["passed"], res["tests"]
    assert res["rtl_vs_ref"] == 0 and res["vectors"] == N_INPUTS


def test_input_scale_is_not_assumed_to_be_one(tmp_path):
    """An input quantiser of scale 2**-3: the RTL port carries codes (value = code * 2**-3)."""
    _, onnx, ref, _ = _export("mlp_input_scale", tmp_path)
    assert ref.input_exp == -3
    info = write_rtl("scale", onnx, tmp_path / "hw")
    assert info["input"]["exp"] == -3 and info["trace_vs_ref"] == 0


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_pattern_is_refused_by_name(name, tmp_path):
    build, shape, pattern = REFUSED[name]
    mw = brevitas_to_qonnx(finish(build()), torch.zeros(1, *shape), tmp_path / "m.onnx")
    with pytest.raises(TrigkitError, match=pattern):
        ReferenceModel(tmp_path / "m.onnx").predict(np.zeros((2, *shape), np.float32))
    with pytest.raises(TrigkitError, match=pattern):
        check_hls_compatible(mw)


def test_every_problem_is_listed_at_once(tmp_path):
    build, shape, _ = REFUSED["maxpool_dilation"]
    mw = brevitas_to_qonnx(finish(build()), torch.zeros(1, *shape), tmp_path / "m.onnx")
    pool = next(n for n in mw.graph.node if n.op_type == "MaxPool")
    pool.attribute.append(__import__("onnx").helper.make_attribute("ceil_mode", 1))
    with pytest.raises(TrigkitError, match=r"(?s)2 problems:\n(?=.*dilations)(?=.*ceil_mode)"):
        check_hls_compatible(mw)


def test_quant_tensor_outputs_are_explained(tmp_path):
    import brevitas_zoo as zoo

    model = torch.nn.Sequential(zoo.input_quant(), zoo.linear(4, 2), zoo.act()).eval()
    from brevitas.export import export_qonnx

    export_qonnx(model, input_t=torch.zeros(1, 4), export_path=str(tmp_path / "m.onnx"),
                 dynamo=False)
    with pytest.raises(TrigkitError, match="return_quant_tensor=False"):
        ReferenceModel(tmp_path / "m.onnx")


def test_bias_on_the_last_layer_is_refused_for_hls4ml_only(tmp_path):
    """hls4ml 1.3 cannot convert a constant added on the last layer: the export check says so;
    the reference and the RTL tracer compute it exactly."""
    from brevitas.quant.scaled_int import Int16Bias

    from brevitas_zoo import input_quant, linear

    model = finish(torch.nn.Sequential(input_quant(), linear(6, 3, bias=True,
                                                             bias_quant=Int16Bias)))
    mw = brevitas_to_qonnx(model, torch.zeros(1, 6), tmp_path / "m.onnx")
    with pytest.raises(TrigkitError, match=r"last layer.*fix: end the model with an activation"):
        check_hls_compatible(mw)
    ref = ReferenceModel(tmp_path / "m.onnx")
    x = grid_codes((6,), 64, 4, True) * 2.0**ref.input_exp
    assert count_mismatches(qonnx_execute(tmp_path / "m.onnx", x), ref.predict(x)) == 0


@pytest.fixture(scope="module")
def tfc(tmp_path_factory):
    """Brevitas' TFC 2-bit example (784-64-64-64-10), exported as its users would."""
    from brevitas_zoo import bnn_pynq_fc

    root = tmp_path_factory.mktemp("tfc")
    net = bnn_pynq_fc("tfc_2w2a")
    brevitas_to_qonnx(net, torch.zeros(1, 1, 28, 28), root / "tfc.onnx")
    x = np.random.default_rng(2).uniform(0, 1, size=(N_INPUTS, 1, 28, 28)).astype(np.float32)
    return {"net": net, "onnx": root / "tfc.onnx", "ref": ReferenceModel(root / "tfc.onnx"),
            "x": x, "root": root}


def test_tfc_2w2a_predicts_exactly(tfc):
    ref, x = tfc["ref"], tfc["x"]
    assert ref.graph.preprocessing and ref.graph.tail  # 2 x - 1 before, TensorNorm after
    y = ref.predict(x)
    assert np.unique(y.round(6), axis=0).shape[0] > N_INPUTS // 2
    assert count_mismatches(qonnx_execute(tfc["onnx"], ref.to_graph_layout(x)), y) == 0
    assert count_mismatches(_brevitas(tfc["net"], x), y) == 0


def test_tfc_2w2a_hls4ml_csim_is_exact(tfc):
    ref, x = tfc["ref"], tfc["x"]
    project = build_hls_project(tfc["onnx"], tfc["root"] / "prj")
    y_int, exp = ref.predict_int(x)
    assert count_mismatches(project.predict(ref.hls_input(x)), y_int * 2.0**exp) == 0


def test_tfc_2w2a_verilog_is_exact_under_cocotb(tfc):
    ref, x = tfc["ref"], tfc["x"]
    info = write_rtl("tfc_2w2a", tfc["onnx"], tfc["root"] / "hw")
    assert info["trace_vs_ref"] == 0
    codes = ref.graph.input_codes(ref.to_graph_layout(x)).astype(np.int64)
    y_int, exp = ref.predict_codes(codes)
    vectors = tfc["root"] / "vectors.npz"
    np.savez(vectors, x=codes, y_int=y_int, y_exp=np.int64(exp), y=y_int * 2.0**exp)
    res = run_cocotb("tfc_2w2a", tfc["root"] / "hw", vectors, tfc["root"] / "sim",
                     gap_vectors=64, reset_vectors=32)
    assert res["passed"] and res["rtl_vs_ref"] == 0 and res["vectors"] == N_INPUTS


def test_tfc_one_bit_versions(tmp_path):
    """1-bit weights and activations (BipolarQuant): exact in the reference (= QONNX = Brevitas)
    and the RTL trace; hls4ml gets 1-bit weights right (1w2a, C simulation exact) but not 1-bit
    activations, which its check refuses by name."""
    from brevitas_zoo import bnn_pynq_fc

    x = np.random.default_rng(3).uniform(0, 1, size=(128, 1, 28, 28)).astype(np.float32)
    for config in ("tfc_1w1a", "tfc_1w2a"):
        net = bnn_pynq_fc(config)
        onnx = tmp_path / f"{config}.onnx"
        mw = brevitas_to_qonnx(net, torch.zeros(1, 1, 28, 28), onnx)
        assert "BipolarQuant" in {n.op_type for n in mw.graph.node}
        ref = ReferenceModel(onnx)
        y = ref.predict(x)
        assert count_mismatches(qonnx_execute(onnx, ref.to_graph_layout(x)), y) == 0
        assert count_mismatches(_brevitas(net, x), y) == 0
        y_int, exp = ref.predict_int(x)
        if config == "tfc_1w1a":
            comb, _ = trace_reference(ref, None, None)
            codes = ref.graph.input_codes(ref.to_graph_layout(x))
            assert count_code_mismatches(comb, ref, codes, 2, True) == (0, len(x))
            with pytest.raises(TrigkitError, match=r"BipolarQuant.*binary activation.*fix: use "
                                                   r"activations of 2 bits"):
                check_hls_compatible(ref_graph_model(onnx))
        else:
            project = build_hls_project(onnx, tmp_path / "prj")
            assert count_mismatches(project.predict(ref.hls_input(x)), y_int * 2.0**exp) == 0
