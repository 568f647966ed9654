"""The firmware stages of a trained quantised card: export (QONNX, vectors, hls4ml C-sim),
rtl (da4ml Verilog), sim (cocotb under Verilator) and synth (Yosys, Vivado), each merging its
results into report.json; and predict (the integer reference on a file of events)."""

from __future__ import annotations

import time
from collections.abc import Callable

from trigkit.core.card import ModelCard, load_card
from trigkit.core.errors import TrigkitError
from trigkit.core.paths import YOSYS_LOG, ModelFiles
from trigkit.core.report import read_section, update_report
from trigkit.firmware.cocotb_runner import run_sim
from trigkit.firmware.export import count_mismatches, run_export
from trigkit.firmware.fpga import VU13P
from trigkit.firmware.hls import build_hls_project
from trigkit.firmware.layout import load_rtl_info, load_vectors
from trigkit.firmware.reference import ReferenceModel
from trigkit.firmware.rtl import run_rtl
from trigkit.firmware.synth import synth_vivado, synth_yosys, vivado_available
from trigkit.learn.train import load_trained_model

from .report import write_markdown

Say = Callable[[str], None]


def firmware_card(model: str, what: str, say: Say = print) -> ModelCard | None:
    """The model card, or None (with a message) for float models, which have no firmware."""
    card = load_card(model)
    if not card.quant.is_quantised:
        say(f"{card.name}: skipped, a float model has no {what}")
        return None
    return card


def export_stage(card: ModelCard, vectors: int = 10000, hls: bool = True,
                 progress: bool = True, say: Say = print) -> dict:
    """QONNX, integer reference, test vectors and the hls4ml C simulation; the mismatch
    counts (0 is the only pass) go to report.json ``bit_exact``. Raises if any is not 0."""
    if vectors < 1:
        raise TrigkitError(f"--vectors = {vectors} must be positive")
    files = ModelFiles(card.name)
    net = load_trained_model(card)
    result = run_export(card, net, files.dir, n_vectors=vectors, progress=progress)
    bit_exact, timings = result["bit_exact"], result["timings"]
    if hls:
        t0 = time.perf_counter()
        project = build_hls_project(result["onnx"], files.hls, io_type=card.hardware.io_type,
                                    part=card.hardware.part, clock_ns=card.hardware.clock_ns)
        timings["hls_build"] = time.perf_counter() - t0
        data = load_vectors(result["vectors"])
        ref = ReferenceModel(result["onnx"])
        t0 = time.perf_counter()
        y_hls = project.predict(ref.hls_input(data["x"]))
        timings["hls_csim"] = time.perf_counter() - t0
        bit_exact["hls_csim_vs_ref"] = count_mismatches(y_hls, data["y"])
    else:
        say("hls4ml C simulation skipped (--no-hls): hls_csim_vs_ref not measured")
    # a new graph makes earlier RTL results stale: bit_exact holds only this export's counts
    report = update_report(files.dir, {"bit_exact": bit_exact},
                           timings={f"export_{k}": v for k, v in timings.items()})
    write_markdown(files.dir, card.description)
    say(f"{card.name}: " + ", ".join(f"{k}={v}" for k, v in report["bit_exact"].items()))
    bad = {k: v for k, v in bit_exact.items() if k != "vectors" and v != 0}
    if bad:
        raise TrigkitError(f"{card.name} is NOT bit-exact: {bad} mismatching vectors of "
                           f"{bit_exact['vectors']}")
    return bit_exact


def rtl_stage(card: ModelCard, say: Say = print) -> dict:
    """Pipelined Verilog into hw/NAME/, the traced logic checked on every vector."""
    out = ModelFiles(card.name).dir
    t0 = time.perf_counter()
    info = run_rtl(card)
    seconds = time.perf_counter() - t0
    rtl_fields = {k: info[k] for k in ("latency_cycles", "ii_cycles", "clock_ns", "latency_ns",
                                      "within_budget", "cost_lut_estimate", "reg_bits",
                                      "weights_nonzero", "front_end")}
    bit_exact = {**read_section(out, "bit_exact"), "trace_vs_ref": info["trace_vs_ref"]}
    update_report(out, {"rtl": {**read_section(out, "rtl"), **rtl_fields},
                        "bit_exact": bit_exact}, timings={"rtl": seconds})
    write_markdown(out, card.description)
    say(f"{card.name}: hw/{card.name}: latency {info['latency_cycles']} cycles = "
        f"{info['latency_ns']:g} ns at {info['clock_ns']:g} ns, II 1, da4ml estimate "
        f"{info['cost_lut_estimate']:.0f} LUT; trace vs reference: {info['trace_vs_ref']} "
        f"mismatches / {info['trace_vectors']} vectors")
    if info["trace_vs_ref"]:
        raise TrigkitError(f"{card.name}: the traced RTL is NOT bit-exact")
    return info


def sim_stage(card: ModelCard, say: Say = print) -> dict:
    """The cocotb testbenches on hw/NAME with build/NAME/vectors.npz."""
    out = ModelFiles(card.name).dir
    t0 = time.perf_counter()
    res = run_sim(card)
    seconds = time.perf_counter() - t0
    bit_exact = {**read_section(out, "bit_exact"), "rtl_vs_ref": res["rtl_vs_ref"]}
    rtl_fields = {**read_section(out, "rtl"), "latency_cycles": res["latency_cycles"],
                  "ii_cycles": res["ii_cycles"], "clock_ns": res["clock_ns"],
                  "cocotb_tests_passed": res["passed"], "verilator_build_s": res["build_s"]}
    update_report(out, {"bit_exact": bit_exact, "rtl": rtl_fields}, timings={"sim": seconds})
    write_markdown(out, card.description)
    say(f"{card.name}: cocotb/Verilator: {res['rtl_vs_ref']} mismatches / "
        f"{res['vectors']} vectors, latency {res['latency_cycles']} cycles, II "
        f"{res['ii_cycles']}, tests passed: {res['passed']} (build {res['build_s']} s)")
    if res["rtl_vs_ref"] or not res["passed"]:
        raise TrigkitError(f"{card.name}: RTL simulation failed: {res['rtl_vs_ref']} mismatches, "
                           f"{res.get('failed')} failed tests (log {res.get('log')})")
    return res


def mark_synth_skipped(model: str) -> None:
    """A float model has no firmware: say so in its report, so every model has a synth entry."""
    card = load_card(model)
    out = ModelFiles(card.name).dir
    if (out / "report.json").is_file():
        update_report(out, {"synth": {"skipped": "float model: no firmware to synthesise"}})
        write_markdown(out, card.description)


def synth_stage(card: ModelCard, tool: str = "auto", say: Say = print) -> dict:
    """Resources, logic depth and latency of hw/NAME into report.json (Yosys always unless
    ``tool`` is vivado; Vivado when on PATH or asked for)."""
    if tool not in ("auto", "yosys", "vivado"):
        raise TrigkitError(f"--tool {tool!r} unknown; allowed: auto, yosys, vivado")
    files = ModelFiles(card.name)
    out = files.dir
    fields: dict = {}
    try:
        info = load_rtl_info(files.hw)
        rtl = {"latency_cycles": info["latency_cycles"], "ii_cycles": info["ii_cycles"],
               "clock_ns": info["clock_ns"],
               "latency_ns": info["latency_cycles"] * info["clock_ns"]}
        fields["rtl"] = {**read_section(out, "rtl"), **rtl}
        if tool in ("auto", "yosys"):
            t0 = time.perf_counter()
            y = synth_yosys(files.hw, log_path=out / YOSYS_LOG)
            y.pop("cells")
            fields["synth"] = {**y, "part": card.hardware.part,
                               "da4ml_lut_estimate": info.get("cost_lut_estimate"),
                               "lut_fraction_vu13p": y["lut"] / VU13P["lut"]}
            update_report(out, fields, timings={"synth_yosys": time.perf_counter() - t0})
            say(f"{card.name}: Yosys {y['lut']} LUT, {y['ff']} FF, {y['dsp']} DSP, "
                f"{y['bram']} BRAM, logic depth {y['logic_depth']} "
                f"({100 * y['lut'] / VU13P['lut']:.2f} % of VU13P LUTs); latency "
                f"{rtl['latency_cycles']} cycles = {rtl['latency_ns']:g} ns, "
                f"II {rtl['ii_cycles']}")
        if tool == "vivado" or (tool == "auto" and vivado_available()):
            t0 = time.perf_counter()
            fields["synth_vivado"] = synth_vivado(files.hw, card.hardware.part,
                                                  card.hardware.clock_ns)
            update_report(out, {"synth_vivado": fields["synth_vivado"]},
                          timings={"synth_vivado": time.perf_counter() - t0})
        elif tool == "auto":
            say(f"{card.name}: vivado not on PATH: vendor synthesis skipped")
    except TrigkitError as err:
        update_report(out, {"synth_error": str(err)})
        write_markdown(out, card.description)
        raise
    write_markdown(out, card.description)
    return fields
