"""Per-model reports: ``build/<name>/report.json`` (every stage adds to it) and ``report.md``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .io import write_json_atomic, write_text_atomic

VU13P_LUT = 1_728_000


def report_path(out_dir: Path) -> Path:
    return out_dir / "report.json"


def read_report(out_dir: Path) -> dict[str, Any]:
    p = report_path(out_dir)
    if not p.is_file():
        return {}
    return json.loads(p.read_text())


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def update_report(out_dir: Path, fields: dict[str, Any], timings: dict[str, float] | None = None
                  ) -> dict[str, Any]:
    """Merge ``fields`` (top-level keys replaced) and stage ``timings`` into report.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = read_report(out_dir)
    report.update(_clean(fields))
    if timings:
        report.setdefault("timings_s", {}).update(_clean(timings))
    write_json_atomic(report_path(out_dir), report)
    return report


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


_METRIC_NAMES = {
    "accuracy": "accuracy (3 classes; baseline: muon vs noise)",
    "auc": "AUC (macro one-vs-rest; baseline: one-point ROC)",
    "eff_at_baseline_fake_rate": "muon efficiency at the baseline's fake rate",
    "eff_prompt_above_threshold": "efficiency, prompt muons above threshold",
    "eff_prompt": "efficiency, all prompt muons",
    "eff_nonpointing": "efficiency, non-pointing muons",
    "fake_rate_hz": "fake rate per sector [Hz]",
    "sigma_core_cm": "core sigma [cm]",
    "mean_cm": "core mean [cm]",
    "tail_frac_8cm": "fraction with |residual| > 8 cm",
    "rms_cm": "RMS [cm]",
    "median_abs_cm": "median |residual| [cm]",
}


def render_markdown(report: dict[str, Any], description: str = "") -> str:
    """The short human-readable report of one model."""
    name = report.get("model", "?")
    lines = [f"# {name}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"Task: **{report.get('task', '?')}**. Parameters: **{report.get('params', 'n/a')}**, "
        f"weights at {report.get('weight_bits', '?')} bits: "
        f"**{report.get('weight_memory_bits', 'n/a')} bits** of weight memory.",
        "",
    ]
    metrics, baseline = report.get("metrics", {}), report.get("baseline", {})
    if metrics:
        lines += ["## Physics on the test events", ""]
        if baseline.get("algorithm"):
            lines += [f"Baseline: {baseline['algorithm']}, on the same events.", ""]
        lines += ["| metric | network | baseline |", "|---|---|---|"]
        for key, label in _METRIC_NAMES.items():
            if key in metrics or key in baseline:
                lines.append(f"| {label} | {_fmt(metrics.get(key))} | {_fmt(baseline.get(key))} |")
        if "test_events" in metrics:
            lines += ["", f"Test events: {metrics['test_events']}"
                      + (f"; noise-only events for the fake rate: "
                         f"{metrics['noise_events_for_fake_rate']}"
                         if "noise_events_for_fake_rate" in metrics else "") + "."]
        lines.append("")
    training = report.get("training")
    if training:
        lines += ["## Training", "",
                  f"{training.get('epochs')} epochs ({training.get('stopped')}), best epoch "
                  f"{training.get('best_epoch')}, wall time {_fmt(training.get('seconds'))} s "
                  f"on {training.get('threads')} CPU threads.", ""]
    bit = report.get("bit_exact")
    if bit:
        lines += ["## Bit-exactness", "", "| check | mismatches |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in bit.items() if k != "vectors"]
        lines += ["", f"Vectors: {bit.get('vectors')}.", ""]
    rtl, synth = report.get("rtl"), report.get("synth")
    if rtl:
        lat = rtl.get("latency_cycles")
        clk = rtl.get("clock_ns")
        ns = f" = {lat * clk:g} ns" if lat is not None and clk else ""
        lines += ["## Firmware", "", f"Latency {lat} cycles{ns}, II {rtl.get('ii_cycles')} "
                  f"cycles at {clk} ns.", ""]
    if synth:
        lut = synth.get("lut")
        frac = f" ({100 * lut / VU13P_LUT:.2f} % of a VU13P)" if isinstance(lut, int) else ""
        lines += [f"Synthesis ({synth.get('tool')}, {synth.get('part')}): {lut} LUT{frac}, "
                  f"{synth.get('ff')} FF, {synth.get('dsp')} DSP, {synth.get('bram')} BRAM, "
                  f"logic depth {synth.get('logic_depth')}.", ""]
    timings = report.get("timings_s")
    if timings:
        lines += ["## Stage timings", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in timings.items()]
        lines.append("")
    plots = report.get("plots", [])
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def write_markdown(out_dir: Path, description: str = "") -> Path:
    """Render report.md from report.json."""
    return write_text_atomic(out_dir / "report.md",
                             render_markdown(read_report(out_dir), description))
