"""Rendering of the reports: ``build/<name>/report.md`` from report.json, and the summary over
all models (``build/summary.md`` + ``summary.png``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trigkit.core.card import DEFAULT_MODELS, load_card
from trigkit.core.errors import TrigkitError
from trigkit.core.io import save_figure_atomic, write_text_atomic
from trigkit.core.paths import BUILD, MODELS_DIR, REPORT_MD, model_dir
from trigkit.core.plots import plt
from trigkit.core.report import json_safe, read_report, report_path
from trigkit.firmware.fpga import VU13P

from .study_report import augmentation_lines, contamination_lines, decorrelation_lines, fmt

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

#: Offline-model working points (evaluate.working_point_metrics), in table order.
_WP_NAMES = {
    "auc": "AUC",
    "bkg_rejection_at_sig_eff": "background rejection 1/eps_B at the signal-efficiency point",
    "eff_at_fake_rate": "signal efficiency at the fake-rate point",
    "inv_jsd_at_50pct_bkg_eff": "1/JSD of background mass, pass vs fail at 50 % bkg. eff.",
    "dcor2_score_mass_bkg": "distance correlation^2 (score, mass) on background",
}


def _offline_lines(metrics: dict[str, Any], baseline: dict[str, Any],
                   variants: dict[str, Any]) -> list[str]:
    """Per-class working points beside the baseline observable, variants side by side, and the
    study tables (S/sqrt(B) scan, tagging, feature importance, efficiency vs pT, GAN)."""
    lines = ["## Physics on the test events", ""]
    if baseline.get("observable"):
        use = "a fit of" if "calibration" in baseline["observable"] else "a cut on"
        lines += [f"Baseline: {use} **{baseline['observable']}** (the best single observable, "
                  "chosen on the validation split), on the same events.", ""]
    per, per_b = metrics.get("per_class", {}), baseline.get("per_class", {})
    if per:
        lines += [f"Each class against **{metrics.get('background', '?')}**.", "",
                  "| class | metric | network | baseline |", "|---|---|---|---|"]
        for cls, wp in per.items():
            for key, label in _WP_NAMES.items():
                if key in wp:
                    bv = per_b.get(cls, {}).get(key)
                    lines.append(f"| {cls} | {label} | {fmt(wp[key])} | {fmt(bv)} |")
        lines.append("")
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)
               and not isinstance(v, bool)}
    if scalars:
        lines += ["| metric | network | baseline |", "|---|---|---|"]
        lines += [f"| {_WP_NAMES.get(k, k)} | {fmt(v)} | {fmt(baseline.get(k))} |"
                  for k, v in scalars.items()]
        lines.append("")
    if variants:
        keys = [k for k in ("auc", "bkg_rejection_at_sig_eff", "eff_at_fake_rate", "accuracy",
                            "inv_jsd_at_50pct_bkg_eff") if k in metrics]
        lines += ["## Variants (same events, same run)", "",
                  "| variant | changes | " + " | ".join(_WP_NAMES.get(k, k) for k in keys) + " |",
                  "|---|---|" + "---|" * len(keys),
                  "| this model | - | " + " | ".join(fmt(metrics.get(k)) for k in keys) + " |"]
        for name, v in variants.items():
            m = v.get("metrics", {})
            changes = ", ".join(f"{k}: {_short(val)}" for k, val in v.get("overrides", {}).items())
            lines.append(f"| {name} | {changes} | "
                         + " | ".join(fmt(m.get(k)) for k in keys) + " |")
        lines.append("")
        if "eff_vs_pt" in metrics:
            rows = {"this model": metrics["eff_vs_pt"]} | {
                name: v["metrics"]["eff_vs_pt"] for name, v in variants.items()
                if "eff_vs_pt" in v.get("metrics", {})}
            lines += ["Efficiency at the fake-rate point versus pT, model and variants:", "",
                      *_study_table(rows), ""]
    for key, title in (("auc_vs_s_over_sqrt_b", "AUC versus S/sqrt(B)"),
                       ("tagging", "Multi-class tagging (highest class above 2/N)"),
                       ("permutation_importance", "Permutation importance (AUC loss)"),
                       ("eff_vs_pt", "Efficiency at the fake-rate point versus pT")):
        if key in metrics:
            lines += [f"## {title}", "", *_study_table(metrics[key]), ""]
    if "uncertainty" in metrics:
        lines += _uncertainty_lines(metrics["uncertainty"], variants)
    if "scores" in metrics:
        lines += _anomaly_lines(metrics, variants)
    if "hunt" in metrics:
        lines += _hunt_lines(metrics["hunt"], "this model")
    for name, v in variants.items():
        if "hunt" in v.get("metrics", {}):
            lines += _hunt_lines(v["metrics"]["hunt"], f"variant {name}")
    gan = {k: v for k, v in metrics.items() if isinstance(v, dict) and k not in (
        "per_class", "auc_vs_s_over_sqrt_b", "tagging", "permutation_importance", "eff_vs_pt",
        "uncertainty", "hunt", "scores", "score_fit")}
    if gan:
        lines += ["## Distribution comparison (network = generated vs real; baseline = two "
                  "halves of the real sample)", "", "| quantity | statistic | network | "
                  "baseline |", "|---|---|---|---|"]
        for q, stats in gan.items():
            for stat, v in stats.items():
                if isinstance(v, int | float):
                    lines.append(f"| {q} | {stat} | {fmt(v)} | "
                                 f"{fmt(baseline.get(q, {}).get(stat))} |")
        lines.append("")
    return lines


def _anomaly_lines(metrics: dict[str, Any], variants: dict[str, Any]) -> list[str]:
    """Every anomaly score of the model and its variants: AUC per class, 1/JSD, dCor^2."""
    runs = {"this model": metrics} | {name: v["metrics"] for name, v in variants.items()
                                      if "scores" in v.get("metrics", {})}
    classes = list(next(iter(metrics["scores"].values()))["per_class"])
    lines = ["## Anomaly scores (test events; fitted on the training/validation events)", "",
             "| model | score | " + " | ".join(f"AUC {c}" for c in classes)
             + " | 1/JSD @ 50 % bkg | dCor^2(score, mass) |",
             "|---|---|" + "---|" * (len(classes) + 2)]
    for run, m in runs.items():
        for score, sm in m["scores"].items():
            aucs = " | ".join(fmt(sm["per_class"].get(c, {}).get("auc"), 3) for c in classes)
            lines.append(f"| {run} | {score} | {aucs} | "
                         f"{fmt(sm['inv_jsd_at_50pct_bkg_eff'], 3)} | "
                         f"{fmt(sm['dcor2_score_mass_bkg'], 3)} |")
    fit = metrics.get("score_fit", {})
    if fit:
        lines += ["", "Complexity fit (this model, validation events): log error = "
                  f"{fmt(fit.get('log_error_offset'))} + {fmt(fit.get('log_error_slope'))} x "
                  f"{fit.get('complexity')}, residual RMS {fmt(fit.get('log_error_residual_rms'))}"
                  f" ({fit.get('complexity_fit_events')} jets); latent Gaussian fitted on "
                  f"{fit.get('latent_fit_events')} training jets."]
    return lines + [""]


#: Calibration numbers of a Bayesian regression, in table order.
_CALIBRATION_NAMES = {
    "pull_width": "pull width (std of Phi^-1(PIT); 1 = calibrated)",
    "pull_width_robust": "pull width, robust (1.4826 x MAD)",
    "pull_mean": "pull mean",
    "coverage_68": "coverage of the central 68 % interval",
    "coverage_95": "coverage of the central 95 % interval",
    "gaussian_pull_width": "width of (true - mean) / std",
    "mean_sigma": "mean predicted sigma",
    "mean_sigma_epistemic": "mean epistemic sigma (spread of the sampled means)",
    "rms_residual": "RMS of (true - predicted mean)",
}


def _uncertainty_lines(unc: dict[str, Any], variants: dict[str, Any]) -> list[str]:
    """The Bayesian section: calibration (regression) or score spread per training size."""
    lines = ["## Bayesian uncertainty (weight posterior sampled "
             f"{unc.get('samples')} times per event)", ""]
    if "pull_width" in unc:
        lines += ["| quantity | value |", "|---|---|"]
        lines += [f"| {label} | {fmt(unc[k])} |" for k, label in _CALIBRATION_NAMES.items()
                  if k in unc]
        lines += ["", "Calibration in bins of the predicted sigma:", "",
                  *_study_table(unc.get("calibration", {})), ""]
        return lines
    rows = {"this model": unc} | {n: v["metrics"]["uncertainty"] for n, v in variants.items()
                                  if "uncertainty" in v.get("metrics", {})}
    lines += ["Per-event spread (standard deviation over weight samples) of the score, by "
              "training-set size:", "", "| run | training events | mean spread | median "
              "spread | AUC of the mean score |", "|---|---|---|---|---|"]
    for name, u in sorted(rows.items(), key=lambda kv: kv[1].get("train_events", 0)):
        lines.append(f"| {name} | {u.get('train_events')} | {fmt(u.get('mean_spread'))} | "
                     f"{fmt(u.get('median_spread'))} | {fmt(u.get('auc_of_mean_score'))} |")
    return lines + [""]


def _hunt_column_rank(column: str) -> tuple[int, str]:
    """Table order: counts, the bump hunt, the supervised reference, the method, AUCs."""
    for rank, start in enumerate(("signal in SR", "S/B in SR", "Z bump hunt", "Z supervised",
                                  "Z ")):
        if column.startswith(start):
            return rank, column
    return 9, column


def _hunt_lines(hunt: dict[str, Any], who: str) -> list[str]:
    """The resonance search: significance per injected fraction, truth after the cuts."""
    sr = hunt.get("sr_gev", ["?", "?"])
    table = hunt.get("table", {})
    cols = sorted({c for row in table.values() for c in row}, key=_hunt_column_rank)
    ordered = {f: {c: row.get(c) for c in cols} for f, row in table.items()}
    truth = hunt.get("truth_after_cut", {})
    s_over_sqrt_b = {f: {k: v.get("s_over_sqrt_b") for k, v in cuts.items()}
                     for f, cuts in truth.items()}
    estimates = {f: {k: f"{v['background estimate']:.0f} (true {v['background']})"
                     for k, v in cuts.items() if "background estimate" in v}
                 for f, cuts in truth.items()}
    lines = [f"## Resonance search: {hunt.get('method')} ({who})", "",
             f"Signal region {sr[0]:g}-{sr[1]:g} GeV, {hunt.get('folds')} folds; each cut "
             "keeps the given share of the signal-region events; Z is the Poisson significance "
             "of the signal-region count over the background from the sideband fit (ANODE: "
             "times the background efficiency from the sideband flow). Rows: injected signal "
             "fraction (signal / background events over the whole mass range).", "",
             *_study_table(ordered), "",
             "True S / sqrt(B) in the signal region after each cut (what a perfect background "
             "estimate would give):", "", *_study_table(s_over_sqrt_b), ""]
    if any(estimates.values()):
        lines += ["ANODE's background estimate after the cut (true background):", "",
                  *_study_table(estimates), ""]
    return lines


def _short(value: Any) -> str:
    """A card value for a table cell: long lists as their length."""
    if isinstance(value, list | tuple) and len(value) > 4:
        return f"[{len(value)} entries]"
    return str(value)


def _study_table(obj: Any) -> list[str]:
    """A study result as a Markdown table: {row: {column: value}} as a matrix, {key: value} as
    two columns; anything else as indented JSON."""
    scalar = (int, float, str, type(None))
    if isinstance(obj, dict) and obj and all(isinstance(v, scalar) for v in obj.values()):
        return ["| | value |", "|---|---|", *(f"| {k} | {fmt(v)} |" for k, v in obj.items())]
    if isinstance(obj, dict) and obj and all(
            isinstance(v, dict) and all(isinstance(x, scalar) for x in v.values())
            for v in obj.values()):
        cols = list(dict.fromkeys(c for v in obj.values() for c in v))
        return ["| | " + " | ".join(map(str, cols)) + " |", "|---|" + "---|" * len(cols),
                *(f"| {k} | " + " | ".join(fmt(v.get(c)) for c in cols) + " |"
                  for k, v in obj.items())]
    return ["```", _dump(obj), "```"]


def _dump(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=1, default=str)


def render_markdown(report: dict[str, Any], description: str = "") -> str:
    """The short human-readable report of one model."""
    name = report.get("model", "?")
    lines = [f"# {name}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"Task: **{report.get('task', '?')}**. Parameters: **{report.get('params', 'n/a')}**, "
        f"weights at {_bits_text(report)} bits: "
        f"**{report.get('weight_memory_bits', 'n/a')} bits** of weight memory.",
        "",
    ]
    metrics, baseline = report.get("metrics", {}), report.get("baseline", {})
    offline = report.get("offline", False)
    if metrics and offline:
        lines += _offline_lines(metrics, baseline, report.get("variants", {}))
    elif metrics:
        lines += ["## Physics on the test events", ""]
        if baseline.get("algorithm"):
            lines += [f"Baseline: {baseline['algorithm']}, on the same events.", ""]
        lines += ["| metric | network | baseline |", "|---|---|---|"]
        for key, label in _METRIC_NAMES.items():
            if key in metrics or key in baseline:
                lines.append(f"| {label} | {fmt(metrics.get(key))} | {fmt(baseline.get(key))} |")
        if "test_events" in metrics:
            lines += ["", f"Test events: {metrics['test_events']}"
                      + (f"; noise-only events for the fake rate: "
                         f"{metrics['noise_events_for_fake_rate']}"
                         if "noise_events_for_fake_rate" in metrics else "") + "."]
        lines.append("")
    if report.get("contamination"):
        lines += contamination_lines(report["contamination"])
    if report.get("decorrelation"):
        lines += decorrelation_lines(report["decorrelation"])
    if report.get("augmentation"):
        lines += augmentation_lines(report["augmentation"])
    training = report.get("training")
    if training and training.get("stopped_by") == "time":
        lines += [f"> **WARNING: training was stopped by its wall-clock safety limit** after "
                  f"{training.get('epochs')} epochs, not by the card's epochs or early stopping: "
                  "this model depends on the machine's speed. Run `make train` again to resume "
                  "it to the card's budget.", ""]
    if training:
        lines += ["## Training", "",
                  f"{training.get('epochs')} epochs ({training.get('stopped')}), best epoch "
                  f"{training.get('best_epoch')}, wall time {fmt(training.get('seconds'))} s "
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
    if synth and synth.get("skipped"):
        lines += [f"Synthesis: skipped ({synth['skipped']}).", ""]
    elif synth:
        lut = synth.get("lut")
        frac = f" ({100 * lut / VU13P['lut']:.2f} % of a VU13P)" if isinstance(lut, int) else ""
        lines += [f"Synthesis ({synth.get('tool')}, {synth.get('part')}): {lut} LUT{frac}, "
                  f"{synth.get('ff')} FF, {synth.get('dsp')} DSP, {synth.get('bram')} BRAM, "
                  f"logic depth {synth.get('logic_depth')}.", ""]
    timings = report.get("timings_s")
    if timings:
        lines += ["## Stage timings", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in timings.items()]
        lines.append("")
    plots = report.get("plots", [])
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _bits_text(report: dict) -> str:
    per_layer = report.get("weight_bits_per_layer")
    if per_layer and len(set(per_layer)) > 1:
        return "/".join(str(b) for b in per_layer) + " (per layer)"
    return str(report.get("weight_bits", "?"))


def write_markdown(out_dir: Path, description: str = "") -> Path:
    """Render report.md from report.json."""
    return write_text_atomic(out_dir / REPORT_MD,
                             render_markdown(read_report(out_dir), description))


#: Published FPGA anchors (LUTs, latency in ns), drawn on the summary plot.
ANCHORS = [
    ("NN pT regression, ATLAS RPC toy (Ospanov et al. 2022): 122 ns", 5_000),
    ("distilled student CNN, 9x16 window (hls4ml/Vitis est.): 595 ns", 118_739),
    ("5 % of a VU13P (budget for a full sector)", 86_400),
]


def summary_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in reports:
        m, b = r.get("metrics", {}), r.get("baseline", {})
        synth, rtl, bit = r.get("synth", {}), r.get("rtl", {}), r.get("bit_exact", {})
        if r.get("offline"):
            metric = ("AUC", m.get("auc"), b.get("auc"))
            extra = (("1/JSD @ 50 % bkg", m.get("inv_jsd_at_50pct_bkg_eff"),
                      b.get("inv_jsd_at_50pct_bkg_eff")) if r.get("task") == "anomaly" else
                     ("1/eps_B @ sig. eff.", m.get("bkg_rejection_at_sig_eff"),
                      b.get("bkg_rejection_at_sig_eff")))
            if r.get("task") == "generative":
                ks = m.get("mass", {}).get("ks") if isinstance(m.get("mass"), dict) else None
                kb = b.get("mass", {}).get("ks") if isinstance(b.get("mass"), dict) else None
                metric, extra = ("KS(jet mass)", ks, kb), ("", None, None)
        elif r.get("task") == "classification":
            metric = ("accuracy", m.get("accuracy"), None)
            extra = ("eff. non-pointing @ baseline fake rate", m.get("eff_nonpointing"),
                     b.get("eff_nonpointing"))
        else:
            metric = ("core sigma [cm]", m.get("sigma_core_cm"), b.get("sigma_core_cm"))
            extra = ("abs(res) > 8 cm", m.get("tail_frac_8cm"), b.get("tail_frac_8cm"))
        mismatches = [v for k, v in bit.items() if k != "vectors"]
        rows.append({
            "model": r.get("model"), "task": r.get("task"), "params": r.get("params"),
            "weight_memory_bits": r.get("weight_memory_bits"), "metric": metric, "extra": extra,
            "bit_exact": (f"{sum(mismatches)} mismatches / {bit.get('vectors')} vectors "
                          f"({', '.join(k for k in bit if k != 'vectors')})" if bit else "n/a"),
            "latency": (f"{rtl['latency_cycles']} cyc = {rtl['latency_cycles'] * rtl['clock_ns']:g}"
                        f" ns, II {rtl.get('ii_cycles')}" if rtl.get("latency_cycles") else "n/a"),
            "lut": synth.get("lut"), "ff": synth.get("ff"), "dsp": synth.get("dsp"),
            "train_s": r.get("timings_s", {}).get("train"),
        })
    return rows


def write_summary(build: Path, names: list[str]) -> tuple[Path, Path | None]:
    """``build/summary.md`` and ``build/summary.png`` over the models that have reports."""
    reports = [read_report(build / n) for n in names if report_path(build / n).is_file()]
    rows = summary_rows(reports)
    lines = ["# trigkit summary", "",
             "| model | task | params | weight memory [bit] | metric | network | baseline | "
             "second metric | network | baseline | bit-exact | latency | LUT | FF | DSP | "
             "train [s] |", "|" + "---|" * 16]
    for row in rows:
        (mn, mv, mb), (en, ev, eb) = row["metric"], row["extra"]
        lines.append(
            f"| {row['model']} | {row['task']} | {fmt(row['params'])} | "
            f"{fmt(row['weight_memory_bits'])} | {mn} | {fmt(mv)} | {fmt(mb)} | {en} | "
            f"{fmt(ev)} | {fmt(eb)} | {row['bit_exact']} | {row['latency']} | "
            f"{fmt(row['lut'])} | {fmt(row['ff'])} | {fmt(row['dsp'])} | "
            f"{fmt(row['train_s'], 3)} |")
    plot = _summary_plot(rows, build / "summary.png")
    if plot is not None:
        lines += ["", "![summary](summary.png)"]
    lines.append("")
    return write_text_atomic(build / "summary.md", "\n".join(lines)), plot


def _summary_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Physics metric versus LUTs for every synthesised model, with the anchors marked."""
    have = [r for r in rows if isinstance(r["lut"], int) and r["metric"][1] is not None
            and r["task"] in ("classification", "regression") and r["metric"][0] != "AUC"]
    if not have:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, task, ylabel in ((axes[0], "classification", "accuracy"),
                             (axes[1], "regression", "core sigma [cm]")):
        pts = [r for r in have if r["task"] == task]
        for r in pts:
            ax.plot(r["lut"], r["metric"][1], "o", ms=7)
            ax.annotate(r["model"], (r["lut"], r["metric"][1]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        for label, lut in ANCHORS:
            ax.axvline(lut, ls=":", color="grey", lw=1)
            ax.text(lut, 0.02, label, rotation=90, fontsize=6, color="grey",
                    transform=ax.get_xaxis_transform(), va="bottom", ha="right")
        if task == "classification":  # accuracy anchors of the reference talk (PHYSICS.md)
            for acc, label in ((0.945, "reference f32 CNN 94.5 %"),
                               (0.925, "reference ternary CNN 92.5 %")):
                ax.axhline(acc, ls="--", color="tab:red", lw=0.8)
                ax.text(1.1e3, acc, label, fontsize=7, color="tab:red", va="bottom")
        ax.set_xscale("log")
        ax.set_xlim(1e3, 2e6)
        ax.set_xlabel("LUTs (Yosys estimate)")
        ax.set_ylabel(ylabel)
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    out = save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return out


def report_stage(model: str | None = None, build: Path = BUILD) -> tuple[list[str], Path]:
    """Re-render build/NAME/report.md from report.json for ``model`` (default: every model
    with a report), then build/summary.md and summary.png; returns (models, summary path)."""
    names = [model] if model else sorted({*DEFAULT_MODELS,
                                          *(p.stem for p in MODELS_DIR.glob("*.yaml"))})
    done = []
    for name in names:
        card = load_card(name)
        out = model_dir(card.name, build)
        if not report_path(out).is_file():
            if model:
                raise TrigkitError(f"{report_path(out)} not found; run trigkit train "
                                   f"--model {card.name} first")
            continue
        write_markdown(out, card.description)
        done.append(card.name)
    md, _ = write_summary(build, done)
    return done, md
