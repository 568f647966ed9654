"""Markdown lines of the studies a card's training runs beside its model (signal
contamination and DisCo strength of anomaly searches, generated-sample augmentation of
classifiers), and the number format every report table uses."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a report table (n/a for None, 3 significant digits if tiny or huge)."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


def contamination_lines(study: dict[str, Any]) -> list[str]:
    """AUC and 1/JSD versus the signal fraction of the training sample, per signal and score."""
    fr = study.get("fractions", [])
    lines = ["## Signal contamination (same test events)", "",
             f"Each model trained {study.get('epochs')} epochs on the background plus the "
             f"given share of one signal; {fmt(study.get('seconds'))} s in all.", "",
             "| signal | score | metric | " + " | ".join(f"{100 * f:g} %" for f in fr) + " |",
             "|---|---|---|" + "---|" * len(fr)]
    for sig, scores in study.get("signals", {}).items():
        for score, r in scores.items():
            for key, label in (("auc", "AUC"), ("inv_jsd", "1/JSD")):
                lines.append(f"| {sig} | {score} | {label} | "
                             + " | ".join(fmt(v, 3) for v in r[key]) + " |")
    return lines + [""]


def decorrelation_lines(study: dict[str, Any]) -> list[str]:
    """Every DisCo lambda: validation 1/JSD (chooses lambda), test AUC per class and 1/JSD per
    score; the chosen lambda."""
    runs = study.get("runs", {})
    if not runs:
        return []
    classes = list(next(iter(runs.values()))["scores"]["error"]["per_class"])
    lam = study.get("chosen_lambda")
    lines = ["## DisCo strength (lambda chosen on validation background, tested on test events)",
             "", f"Each model trained {study.get('epochs')} epochs; the shipped lambda is the "
             f"smallest whose plain error reaches 1/JSD >= {fmt(study.get('target_inv_jsd'))} "
             f"on the {study.get('validation_background_events')} validation background jets: "
             f"**{'none reaches it' if lam is None else f'lambda = {lam:g}'}**; "
             f"{fmt(study.get('seconds'))} s in all.", "",
             "| lambda | validation 1/JSD (error) | score | "
             + " | ".join(f"AUC {c}" for c in classes) + " | 1/JSD @ 50 % bkg (test) |",
             "|---|---|---|" + "---|" * (len(classes) + 1)]
    for key, r in runs.items():
        mark = " (chosen)" if lam is not None and r["lambda"] == lam else ""
        for score, m in r["scores"].items():
            aucs = " | ".join(fmt(m["per_class"].get(c, {}).get("auc"), 3) for c in classes)
            lines.append(f"| {key}{mark} | {fmt(r['val_inv_jsd'], 3)} | {score} | {aucs} | "
                         f"{fmt(m['inv_jsd_at_50pct_bkg_eff'], 3)} |")
    return lines + [""]


def augmentation_lines(study: dict[str, Any]) -> list[str]:
    """AUC and background rejection of every training-set row (mean +- std over seeds)."""
    lines = ["## Generated-sample augmentation (same real test events)", "",
             f"Generated events from `{study.get('generated_from')}`; each row trained "
             f"{study.get('epochs')} epochs with {study.get('seeds')} seeds; "
             f"{fmt(study.get('seconds'))} s in all.", "",
             "| training set | events | generated | AUC (mean +- std) | 1/eps_B (mean +- std) |"
             " AUC per seed |", "|---|---|---|---|---|---|"]
    for row, r in study.get("rows", {}).items():
        lines.append(f"| {row} | {r['train_events']} | {r['generated_events']} | "
                     f"{fmt(r['auc_mean'], 4)} +- {fmt(r['auc_std'], 2)} | "
                     f"{fmt(r['inv_bkg_eff_mean'], 4)} +- {fmt(r['inv_bkg_eff_std'], 2)} | "
                     + ", ".join(fmt(v, 4) for v in r["auc"]) + " |")
    return lines + [""]
