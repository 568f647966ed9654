"""``build/<name>/report.json``: every stage merges its results into it (rendering to
report.md and the summary lives in :mod:`trigkit.pipeline.report`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .io import write_json_atomic
from .paths import REPORT_JSON


def report_path(out_dir: Path) -> Path:
    """``out_dir/report.json``."""
    return out_dir / REPORT_JSON


def read_report(out_dir: Path) -> dict[str, Any]:
    """The model's report.json as a dict (empty when there is none yet)."""
    p = report_path(out_dir)
    if not p.is_file():
        return {}
    return json.loads(p.read_text())


def json_safe(obj: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
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
    report.update(json_safe(fields))
    if timings:
        report.setdefault("timings_s", {}).update(json_safe(timings))
    write_json_atomic(report_path(out_dir), report)
    return report




def read_section(out_dir: Path, key: str) -> dict[str, Any]:
    """One top-level section of report.json (empty when absent)."""
    return read_report(out_dir).get(key, {})
