"""Evaluation of the L0 trigger models on their test events, always beside the standard
algorithm on the same events: the coincidence-window trigger at equal fake rate for the
classifiers, the analytic two-track vertex fit for the vertex regression."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from trigkit.core.cache import cached_file
from trigkit.core.config import from_dict, to_dict
from trigkit.core.errors import TrigkitError
from trigkit.core.paths import CACHE
from trigkit.core.plots import (
    plot_confusion,
    plot_efficiency_vs_pt,
    plot_regression_scatter,
    plot_residuals,
    plot_roc,
)
from trigkit.core.registry import register_evaluator
from trigkit.l0.baseline import (
    BaselineConfig,
    Roads,
    calibrate_roads,
    efficiency,
    run_trigger,
    turn_on,
)
from trigkit.l0.data import sim_config_for
from trigkit.l0.detector import LABELS
from trigkit.l0.simulate import iter_chunks
from trigkit.l0.vertexfit import fit_known_tracks, fit_vertex
from trigkit.learn.metrics import (
    accuracy,
    confusion_matrix,
    core_gaussian_fit,
    cut_at_fake_rate,
    multiclass_auc,
    regression_metrics,
    roc_auc,
    roc_curve,
)

from .common import predict_outputs, softmax


def baseline_roads(card, sim_cfg, cache_dir: Path = CACHE) -> Roads:
    """Coincidence roads for the card's evaluation settings, calibrated once and cached."""
    bcfg = from_dict(BaselineConfig, {"mode": card.evaluation.baseline_mode,
                                      "threshold_gev": card.evaluation.threshold_gev})
    key = {"sim": sim_cfg.to_dict(), "baseline": to_dict(bcfg)}
    path = cached_file(cache_dir, "roads", key,
                       lambda p: calibrate_roads(sim_cfg, bcfg).save(p), suffix=".json")
    return Roads.load(path)


@register_evaluator("classification", "hits")
def evaluate_classification(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Accuracy, AUC and the trigger comparison with the coincidence baseline.

    The network's trigger score is 1 - P(noise). Its cut is set so that its fake rate on
    noise-only events equals the baseline's on the same events (the test split's noise events
    plus ``evaluation.noise_events`` extra ones); efficiencies are then compared on the test
    split's muon events.
    """
    test = splits["test"]
    sim_cfg = sim_config_for(card)
    det = sim_cfg.detector
    images = test.images()
    probs = softmax(predict_outputs(model, card, images))
    labels = test.target
    predicted = probs.argmax(axis=1)
    classes = list(card.data.classes)
    noise_class = classes.index("noise") if "noise" in classes else None
    metrics: dict[str, Any] = {
        "accuracy": accuracy(labels, predicted),
        "auc": multiclass_auc(labels, probs)["macro"],
        "auc_per_class": dict(zip(classes, multiclass_auc(labels, probs)["per_class"],
                                  strict=True)),
        "confusion": confusion_matrix(labels, predicted, len(classes)).tolist(),
        "test_events": int(len(labels)),
    }
    plot_confusion(np.asarray(metrics["confusion"]), classes, plots_dir / "confusion.png")
    if noise_class is None:
        return {"metrics": metrics, "baseline": {}}

    roads = baseline_roads(card, sim_cfg)
    base_fired, _ = run_trigger(images, det, roads)
    net_score = 1.0 - probs[:, noise_class]
    # extra noise-only events, streamed in chunks through both triggers
    noise_net, noise_base = [net_score[labels == noise_class]], [base_fired[labels == noise_class]]
    for _, chunk in iter_chunks(sim_cfg, "noise", card.evaluation.noise_events,
                                card.evaluation.seed):
        p = softmax(predict_outputs(model, card, chunk["hits"]))
        noise_net.append(1.0 - p[:, noise_class])
        noise_base.append(run_trigger(chunk["hits"], det, roads)[0])
    noise_net_all, noise_base_all = np.concatenate(noise_net), np.concatenate(noise_base)
    base_fake = float(noise_base_all.mean())
    cut = cut_at_fake_rate(noise_net_all, base_fake)
    net_fired = net_score >= cut
    net_fake = float((noise_net_all >= cut).mean())

    truth_label = test.truth("label")
    pt = test.truth("pt")
    thr = card.evaluation.threshold_gev
    prompt = truth_label == LABELS["prompt"]
    nonpointing = truth_label == LABELS["nonpointing"]
    muon = labels != noise_class

    def trigger_metrics(fired: np.ndarray, fake: float) -> dict[str, float]:
        is_muon = muon.astype(int)
        tpr = float(fired[muon].mean()) if muon.any() else math.nan
        return {
            "eff_at_baseline_fake_rate": tpr,
            "eff_prompt_above_threshold": efficiency(fired[prompt & (pt >= thr)])[0],
            "eff_prompt": efficiency(fired[prompt])[0],
            "eff_nonpointing": efficiency(fired[nonpointing])[0],
            "fake_rate": fake,
            "fake_rate_hz": fake * 40e6,
            "accuracy": accuracy(is_muon, fired.astype(int)),  # muon vs noise decision
            "auc": 0.5 * (1.0 + tpr - fake),  # area under the one-point ROC
        }

    metrics.update({k: v for k, v in trigger_metrics(net_fired, net_fake).items()
                    if k not in ("accuracy", "auc")})
    metrics["trigger_accuracy"] = accuracy(muon.astype(int), net_fired.astype(int))
    metrics["trigger_cut"] = float(cut)
    metrics["noise_events_for_fake_rate"] = int(noise_net_all.size)
    baseline = {"algorithm": f"coincidence {card.evaluation.baseline_mode}-pT, "
                f"{thr:g} GeV roads", **trigger_metrics(base_fired, base_fake)}

    events = {"prompt": prompt, "non-pointing": nonpointing, "muon": muon}
    _plot_trigger_comparison(card, plots_dir, pt, events, (net_fired, base_fired), net_score,
                             probs, baseline)
    return {"metrics": metrics, "baseline": baseline}


TURN_ON_EDGES_GEV = (3, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5, 25, 30, 35, 40, 45, 50.0)


def _plot_trigger_comparison(card, plots_dir: Path, pt: np.ndarray, events: dict,
                             fired: tuple[np.ndarray, np.ndarray], net_score: np.ndarray,
                             probs: np.ndarray, baseline: dict) -> None:
    """Turn-on curves of network and baseline at equal fake rate, and the ROC curves."""
    prompt, nonpointing, muon = events["prompt"], events["non-pointing"], events["muon"]
    net_fired, base_fired = fired
    thr = card.evaluation.threshold_gev
    edges = np.array(TURN_ON_EDGES_GEV)
    series = {}
    for name, sel in (("prompt", prompt), ("non-pointing", nonpointing)):
        series[f"network, {name}"] = turn_on(pt[sel], net_fired[sel], edges)
        series[f"baseline, {name}"] = turn_on(pt[sel], base_fired[sel], edges)
    plot_efficiency_vs_pt(series, plots_dir / "turn_on.png", threshold_gev=thr,
                          title=f"{card.name} vs coincidence baseline at equal fake rate "
                          f"({baseline['fake_rate'] * 40e6:.3g} Hz/sector)")
    fpr, tpr, _ = roc_curve(muon, net_score)
    curves = {"muon vs noise": (fpr, tpr, roc_auc(muon, net_score))}
    classes = list(card.data.classes)
    if "prompt" in classes and "nonpointing" in classes:
        sel = prompt | nonpointing
        s = probs[sel, classes.index("nonpointing")]
        f2, t2, _ = roc_curve(nonpointing[sel], s)
        curves["non-pointing vs prompt"] = (f2, t2, roc_auc(nonpointing[sel], s))
    plot_roc(curves, plots_dir / "roc.png", title=card.name, log_x=True,
             points={"coincidence baseline (muon vs noise)":
                     (baseline["fake_rate"], baseline["eff_at_baseline_fake_rate"])})


def _truth_or_none(split, key: str) -> np.ndarray | None:
    try:
        return split.truth(key)
    except TrigkitError:  # e.g. a user's file without simulation truth
        return None


@register_evaluator("regression", "hits")
def evaluate_regression(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Resolution metrics of the network and of the analytic two-track vertex fit."""
    test = splits["test"]
    images = test.images()
    pred = predict_outputs(model, card, images)
    true = test.target.astype(np.float64)
    metrics = {**regression_metrics(pred, true), "test_events": int(len(true))}
    det = sim_config_for(card).detector
    fit = fit_vertex(images, det)
    baseline = {"algorithm": "analytic two-track vertex fit",
                **regression_metrics(fit["r_cm"], true),
                "fit_success": float(np.mean(fit["ok"]))}
    mu_x = _truth_or_none(test, "mu_x") if card.data.target == "vtx_r" else None
    if mu_x is not None:  # the toy's resolution floor: the same fit, perfect hit assignment
        baseline["floor"] = {
            "true_positions": regression_metrics(fit_known_tracks(mu_x, det, False), true),
            "strip_centres": regression_metrics(fit_known_tracks(mu_x, det, True), true),
        }
    res_net = pred - true
    res_fit = fit["r_cm"] - true
    fits = {}
    for name, r in (("network", res_net), ("analytic fit", res_fit)):
        r = r[np.isfinite(r)]
        if r.size >= 10:
            fits[name] = core_gaussian_fit(r)
    plot_residuals({"network": res_net[np.isfinite(res_net)],
                    "analytic fit": res_fit[np.isfinite(res_fit)]},
                   plots_dir / "residuals.png", fit=fits,
                   xlabel=f"{card.data.target}: predicted - true [cm]", title=card.name)
    plot_regression_scatter(true, pred, plots_dir / "scatter.png", label=card.name)
    return {"metrics": metrics, "baseline": baseline}
