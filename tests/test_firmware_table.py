"""The firmware path is not only for images: a tiny ternary MLP on a CSV table, with signed
(two's complement) input codes, through QONNX, the integer reference, hls4ml C simulation, da4ml
RTL, cocotb/Verilator and Yosys, bit-exact at every step."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from trigkit.firmware.export import edge_case_codes
from trigkit.firmware.layout import pack_inputs

NAME = "tiny_table_tnn"


def test_signed_edge_codes_and_packing():
    codes = edge_case_codes((5,), 4, seed=1, signed=True)
    assert codes.dtype == np.int8 and codes.min() == -8 and codes.max() == 7
    assert any((c == -8).all() for c in codes) and any((c == 7).all() for c in codes)
    words = pack_inputs(codes, 4, signed=True)
    for row, word in zip(codes, words, strict=True):
        fields = [(word >> (4 * p)) & 15 for p in range(5)]
        assert [f - 16 if f >= 8 else f for f in fields] == row.tolist()
    with pytest.raises(Exception, match=r"4-bit signed range \[-8, 7\]"):
        pack_inputs(codes * 2, 4, signed=True)


def _write_table(path: Path, n: int = 6000, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    a = rng.normal(0, 1, n) + 1.2 * label
    b = rng.normal(0, 1, n) - 0.8 * label
    c = rng.normal(5, 2, n)  # uninformative, not centred: standardisation centres it
    lines = ["a,b,c,label"] + [f"{x:.5f},{y:.5f},{z:.5f},{'sig' if k else 'bkg'}"
                               for x, y, z, k in zip(a, b, c, label, strict=True)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_table_mlp_firmware_chain_is_bit_exact(tmp_path):
    """train -> export (QONNX, reference, hls4ml C-sim) -> rtl -> sim -> synth from the CLI."""
    _write_table(tmp_path / "events.csv")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{NAME}.yaml").write_text(yaml.safe_dump({
        "name": NAME, "task": "classification",
        "data": {"source": "events.csv", "features": ["a", "b", "c"], "input_shape": [3],
                 "classes": ["bkg", "sig"], "standardise": True, "input_bits": 5,
                 "input_lsb": 0.25, "split": [0.6, 0.2, 0.2]},
        "architecture": {"kind": "mlp", "dense": [8]},
        "quant": {"weights": "ternary", "weight_scale": 0.25, "act_bits": 3},
        "training": {"epochs": 3, "batch_size": 128, "lr": 3e-3, "threads": 1},
        "evaluation": {"background": "bkg"},
        "hardware": {"clock_ns": 3.125, "latency_cutoff_ns": 100}}))
    exe = str(Path(sys.executable).with_name("trigkit"))
    for stage in (["train", "--no-progress"], ["export", "--vectors", "800", "--no-progress"],
                  ["rtl"], ["sim"], ["synth"]):
        res = subprocess.run([exe, stage[0], "--model", NAME, *stage[1:]], cwd=tmp_path,
                             capture_output=True, text=True)
        assert res.returncode == 0, (stage, res.stdout[-2000:], res.stderr[-2000:])
    x = np.load(tmp_path / "build" / NAME / "vectors.npz")["x"]
    assert x.dtype == np.int8 and x.min() < 0 < x.max()  # negative codes are exercised
    report = json.loads((tmp_path / "build" / NAME / "report.json").read_text())
    assert report["metrics"]["auc"] > 0.7  # a and b separate the classes
    exact = report["bit_exact"]
    assert exact["vectors"] == len(x) >= 800
    for key in ("qonnx_vs_ref", "brevitas_vs_ref", "hls_csim_vs_ref", "trace_vs_ref",
                "rtl_vs_ref"):
        assert exact[key] == 0, (key, exact)
    rtl = json.loads((tmp_path / "hw" / NAME / "rtl.json").read_text())
    assert rtl["input"]["signed"] is True and rtl["input"]["element_bits"] == 5
    synth = report["synth"]
    assert synth["lut"] > 0 and synth["dsp"] == 0 and synth["bram"] == 0

    # bad input: a missing tool, then a model without RTL: clear errors, non-zero exits, and
    # the rest of the report is kept
    if shutil.which("vivado") is None:
        res = subprocess.run([exe, "synth", "--model", NAME, "--tool", "vivado"], cwd=tmp_path,
                             capture_output=True, text=True)
        assert res.returncode == 2 and "vivado is not on PATH" in res.stderr
    shutil.rmtree(tmp_path / "hw" / NAME)
    res = subprocess.run([exe, "synth", "--model", NAME], cwd=tmp_path, capture_output=True,
                         text=True)
    assert res.returncode == 2 and "trigkit rtl --model" in res.stderr, res.stderr
    after = json.loads((tmp_path / "build" / NAME / "report.json").read_text())
    assert "trigkit rtl --model" in after["synth_error"]
    assert after["metrics"] == report["metrics"] and after["bit_exact"] == exact


def test_graph_layout_of_multichannel_images():
    from trigkit.firmware.layout import graph_layout

    x = np.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4)  # (N, C, H, W)
    y = graph_layout(x, (3, 4, 2))
    assert y.shape == (2, 3, 4, 2) and y[1, 2, 3, 1] == x[1, 1, 2, 3]
    assert graph_layout(x[:, 0], (3, 4, 1)).shape == (2, 3, 4, 1)
    with pytest.raises(Exception, match="do not fit the model input"):
        graph_layout(x, (4, 3, 2))
