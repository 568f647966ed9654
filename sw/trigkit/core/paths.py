"""Where everything lives: the repository folders and every per-model file name, in one place.

A model ``NAME`` has its card in ``models/NAME.yaml``; everything produced for it goes to
``build/NAME/`` (checkpoints, ``model.qonnx.onnx``, ``vectors.npz``, ``report.json``/``.md``,
``plots/``), its hls4ml project to ``hls/NAME/``, its Verilog to ``hw/NAME/`` (with ``rtl.json``)
and its Verilator build to ``sim/sim_build_NAME/``. Relative folders are taken from the working
directory (the repository root when run through ``make``); hand-written HDL and the cocotb
testbenches are found beside the package source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Model cards.
MODELS_DIR = Path("models")
#: Per-model outputs.
BUILD = Path("build")
#: Generated hls4ml projects.
HLS_DIR = Path("hls")
#: Generated Verilog.
HW_DIR = Path("hw")
#: Generated event files (cached by configuration hash).
DATA_CACHE = BUILD / ".data"
#: Other cached results (e.g. calibrated coincidence roads).
CACHE = BUILD / ".cache"

#: The repository root of this source tree (hw/common and sim/ live there).
SOURCE_ROOT = Path(__file__).resolve().parents[3]
#: Hand-written HDL shared by every model.
COMMON_HDL = SOURCE_ROOT / "hw" / "common"
#: The cocotb testbenches (``TRIGKIT_SIM_DIR`` overrides).
SIM_DIR = Path(os.environ.get("TRIGKIT_SIM_DIR", SOURCE_ROOT / "sim"))

#: Per-user cache outside the project (records of what this machine built itself).
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trigkit"

ONNX_NAME = "model.qonnx.onnx"
VECTORS_NAME = "vectors.npz"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
RTL_JSON = "rtl.json"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
HISTORY_JSON = "history.json"
METRICS_CSV = "metrics.csv"
PLOTS = "plots"
YOSYS_LOG = "yosys.log"


def model_dir(name: str, build: Path = BUILD) -> Path:
    """``build/NAME``: everything produced for one model."""
    return Path(build) / name


@dataclass(frozen=True)
class ModelFiles:
    """Every file and folder of one model (see the module docstring)."""

    name: str
    build: Path = BUILD

    @property
    def dir(self) -> Path:
        return model_dir(self.name, self.build)

    @property
    def onnx(self) -> Path:
        return self.dir / ONNX_NAME

    @property
    def vectors(self) -> Path:
        return self.dir / VECTORS_NAME

    @property
    def report(self) -> Path:
        return self.dir / REPORT_JSON

    @property
    def plots(self) -> Path:
        return self.dir / PLOTS

    @property
    def best(self) -> Path:
        return self.dir / BEST_CHECKPOINT

    @property
    def last(self) -> Path:
        return self.dir / LAST_CHECKPOINT

    @property
    def hls(self) -> Path:
        return HLS_DIR / self.name

    @property
    def hw(self) -> Path:
        return HW_DIR / self.name

    @property
    def sim_build(self) -> Path:
        return SIM_DIR / f"sim_build_{self.name}"
