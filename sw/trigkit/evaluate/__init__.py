"""Evaluation of a trained model on its test split, against the standard algorithm on the same
events: task dispatch (:func:`evaluate_model`) to the evaluators the domains register,
:mod:`.l0` (trigger and vertex models), :mod:`.offline` (jet, table and histogram models) and
:mod:`.hunt` (resonance searches on the dijet toy: CWoLa, ANODE); Bayesian models add
:mod:`.uncertainty` (per-prediction spread, calibration)."""

from __future__ import annotations

from pathlib import Path

from trigkit.core import registry
from trigkit.core.paths import PLOTS

from . import hunt, l0, offline  # noqa: F401 - importing them registers their evaluators
from .uncertainty import bayesian_study


def evaluate_model(card, model, splits, out_dir: Path, progress: bool = False) -> dict:
    """Evaluate a trained model on its test split; writes plots to ``out_dir/plots``.

    Returns ``{"metrics": ..., "baseline": ...}`` (report.json's sections)."""
    plots_dir = Path(out_dir) / PLOTS
    plots_dir.mkdir(parents=True, exist_ok=True)
    evaluate = registry.evaluator(card.task, card.data.input_format)
    result = evaluate(card, model, splits, plots_dir, progress)
    if card.architecture.bayesian:
        result["metrics"]["uncertainty"] = bayesian_study(card, model, splits, plots_dir)
    return result
