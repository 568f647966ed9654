"""Evaluation of the offline models (jet images, tables, pseudo-experiment histograms):
working points against the background class beside the best single observable, anomaly
search with mass sculpting, GAN validation, and each format's studies."""

from __future__ import annotations

import numpy as np

from trigkit.core.plots import (
    plot_bars,
    plot_confusion,
    plot_curves,
    plot_roc,
    plot_score_distributions,
    plot_sculpting,
)
from trigkit.core.registry import register_evaluator
from trigkit.learn.anomaly import SCORES, fit_scorer
from trigkit.learn.decorrelate import (
    distance_correlation_numpy,
    inverse_jsd_at_background_efficiency,
)
from trigkit.learn.gan import sample
from trigkit.learn.gan_validation import compare_samples, plot_gan_validation, two_sample_auc
from trigkit.learn.metrics import (
    accuracy,
    confusion_matrix,
    cut_at_fake_rate,
    roc_auc,
    roc_curve,
    working_point_metrics,
)
from trigkit.offline.data import histogram_sets
from trigkit.offline.histograms import HistBinning
from trigkit.offline.jetprep import image_observables

from .common import predict_outputs, softmax


def _background_index(card) -> int:
    bkg = card.evaluation.background or card.data.classes[0]
    if bkg not in card.data.classes:
        raise ValueError(f"evaluation.background {bkg!r} is not one of data.classes "
                         f"{list(card.data.classes)}")
    return list(card.data.classes).index(bkg)


def _pair_score(probs: np.ndarray, k: int, b: int) -> np.ndarray:
    """Class k against class b from softmax outputs: p_k / (p_k + p_b)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s = probs[:, k] / (probs[:, k] + probs[:, b])
    return np.nan_to_num(s, nan=0.5)


def baseline_observables(card, split) -> dict[str, np.ndarray]:
    """Single physics observables a standard analysis would cut on, per input format: jet width,
    hadronic fraction, mass and pT from the image pixels; each table feature; a histogram's
    mean pT and total count."""
    x = split.images()
    fmt = card.data.input_format
    if fmt == "jet_images":
        imgs = x.astype(np.float64)
        obs = image_observables(imgs, split.context.get("pixel_size", 0.1))
        out = {f"jet {k}": np.asarray(v, np.float64) for k, v in obs.items()}
        if imgs.shape[1] == 2:
            tot = imgs.sum(axis=(1, 2, 3))
            out["hadronic fraction"] = np.where(tot > 0, imgs[:, 1].sum(axis=(1, 2)) /
                                                np.where(tot > 0, tot, 1), 0.0)
        return out
    if fmt == "table":
        return {name: x[:, i].astype(np.float64) for i, name in enumerate(card.data.features)}
    if fmt == "histograms":
        h = split.truth("counts").astype(np.float64)
        edges = np.asarray(HistBinning().pt_edges, float)
        centres = 0.5 * (edges[1:] + edges[:-1])
        tot = h.sum(axis=(1, 2))
        mean_pt = (h.sum(axis=2) * centres[None, :h.shape[1]]).sum(1) / np.where(tot > 0, tot, 1)
        return {"histogram mean pT": mean_pt, "histogram total": tot}
    return {}


def best_baseline(card, splits, k: int, b: int) -> tuple[str, float]:
    """The single observable (and sign) separating class k from b best on the validation split."""
    val = splits["val"]
    sel = np.isin(val.target, (k, b))
    if not sel.any() or len(np.unique(val.target[sel])) < 2:
        val = splits["test"]
        sel = np.isin(val.target, (k, b))
    best = ("", 1.0, 0.5)
    for name, v in baseline_observables(card, val).items():
        v = v[sel]
        if not np.all(np.isfinite(v)):
            continue
        auc = roc_auc(val.target[sel] == k, v)
        sign = 1.0 if auc >= 0.5 else -1.0
        if max(auc, 1 - auc) > best[2]:
            best = (name, sign, max(auc, 1 - auc))
    return best[0], best[1]


@register_evaluator("classification")
def evaluate_offline_classification(card, model, splits, plots_dir,
                                    progress: bool = False) -> dict:
    """Each class against the background class: AUC, 1/eps_B at the signal-efficiency working
    point, efficiency at the fake rate; beside the best single observable (chosen on the
    validation split). Histogram models add the S/sqrt(B) scan, tables permutation importance
    and efficiency versus pT when a ``pt`` column is kept."""
    ev = card.evaluation
    test = splits["test"]
    x, y = test.images(), test.target
    probs = softmax(predict_outputs(model, card, x))
    classes = list(card.data.classes)
    b = _background_index(card)
    obs_test = baseline_observables(card, test)
    per, base, curves = {}, {}, {}
    for k, name in enumerate(classes):
        if k == b:
            continue
        sel = (y == k) | (y == b)
        score = _pair_score(probs[sel], k, b)
        per[name] = working_point_metrics(y[sel] == k, score, ev.signal_eff, ev.fake_rate)
        fpr, tpr, _ = roc_curve(y[sel] == k, score)
        curves[f"network: {name}"] = (fpr, tpr, per[name]["auc"])
        obs, sign = best_baseline(card, splits, k, b)
        if obs:
            bscore = sign * obs_test[obs][sel]
            base[name] = {"observable": ("-" if sign < 0 else "") + obs,
                          **working_point_metrics(y[sel] == k, bscore, ev.signal_eff,
                                                  ev.fake_rate)}
            fpr, tpr, _ = roc_curve(y[sel] == k, bscore)
            curves[f"cut on {base[name]['observable']}: {name}"] = (fpr, tpr, base[name]["auc"])
    first = next(iter(per))
    metrics = {"accuracy": accuracy(y, probs.argmax(1)), "n_test": int(len(y)),
               **{k: per[first][k] for k in per[first]}, "per_class": per,
               "background": classes[b]}
    baseline = ({k: v for k, v in base[first].items()} | {"per_class": base}) if base else {}
    plot_roc(curves, plots_dir / "roc.png", title=f"{card.name} (test, {len(y)} events)")
    plot_confusion(confusion_matrix(y, probs.argmax(1), len(classes)), classes,
                   plots_dir / "confusion.png")
    plot_score_distributions({c: 1.0 - probs[y == k, b] for k, c in enumerate(classes)},
                             plots_dir / "scores.png", xlabel=f"1 - P({classes[b]})",
                             title=card.name)
    if card.data.input_format == "histograms":
        metrics.update(histogram_scan(card, model, splits, plots_dir))
        if card.data.hist.mode == "multiclass":
            metrics["tagging"] = multiclass_tagging(y, probs, classes)
    if card.data.input_format == "table":
        metrics["permutation_importance"] = permutation_importance(card, model, test, b,
                                                                   plots_dir)
        if "pt" in test.extra:
            metrics["eff_vs_pt"] = efficiency_vs_pt(card, test, probs, b, plots_dir)
    return {"metrics": metrics, "baseline": baseline}


def multiclass_tagging(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Fraction of histograms of each true class whose highest class probability is above 2/N
    and belongs to that class (the multi-class counting of the monojet study)."""
    n = len(classes)
    top = probs.argmax(1)
    confident = probs.max(1) > 2.0 / n
    return {c: float(np.mean((top[y == k] == k) & confident[y == k])) if np.any(y == k)
            else float("nan") for k, c in enumerate(classes)}


def histogram_scan(card, model, splits, plots_dir) -> dict:
    """AUC (SM vs SM + signal) versus S/sqrt(B) for several background sizes r, on histograms
    built from the test split's events only; equal AUC at equal S/sqrt(B) shows the
    invariance with B."""
    h = card.data.hist
    pools = splits["test"].context["pools"]
    n_sets = max(200, min(1000, len(splits["test"])))
    scan, series = {}, {}
    for r in h.scan_r:
        aucs = []
        for z in h.scan_s_over_sqrt_b:
            try:
                x, y, _ = histogram_sets(card, pools, r, z, n_sets, seed=7919 + r,
                                         shape=splits["test"].context["background_shape"])
            except Exception as err:  # noqa: BLE001 - too few test events for this r
                scan[f"r={r}"] = f"skipped: {err}"
                aucs = []
                break
            probs = softmax(predict_outputs(model, card, x))
            is_sig = y > 0
            aucs.append(roc_auc(is_sig, 1.0 - probs[:, 0]))
        if aucs:
            scan[f"r={r}"] = dict(zip(map(str, h.scan_s_over_sqrt_b), aucs, strict=True))
            series[f"B = {r} events"] = (np.asarray(h.scan_s_over_sqrt_b), np.asarray(aucs))
    if series:
        plot_curves(series, plots_dir / "auc_vs_s_over_sqrt_b.png", "S / sqrt(B)",
                    "AUC (SM vs SM + signal)", title=f"{card.name}: trained at r = {h.r}, "
                    f"S/sqrt(B) = {h.s_over_sqrt_b:g}", hline=0.5)
    return {"auc_vs_s_over_sqrt_b": scan}


def permutation_importance(card, model, test, b: int, plots_dir, seed: int = 0) -> dict:
    """AUC loss when one feature column is shuffled across the test events (signal = every
    class other than the background)."""
    x = test.images()
    y = test.target != b

    def auc_of(inputs: np.ndarray) -> float:
        probs = softmax(predict_outputs(model, card, inputs))
        return roc_auc(y, 1.0 - probs[:, b])

    ref = auc_of(x)
    rng = np.random.default_rng(seed)
    drops = {}
    for i, name in enumerate(card.data.features):
        xp = x.copy()
        xp[:, i] = xp[rng.permutation(len(xp)), i]
        drops[name] = ref - auc_of(xp)
    plot_bars(drops, plots_dir / "feature_importance.png", "AUC loss when the feature is "
              "permuted", title=f"{card.name} (test AUC {ref:.4f})")
    return drops


#: pT bin edges [GeV] of the efficiency-versus-pT study.
EFF_PT_EDGES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)


def pt_bin_centres(edges: tuple[float, ...] = EFF_PT_EDGES) -> np.ndarray:
    """Centres of the efficiency-versus-pT bins."""
    return 0.5 * (np.asarray(edges[:-1]) + np.asarray(edges[1:]))


def efficiency_vs_pt(card, test, probs: np.ndarray, b: int, plots_dir,
                     edges: tuple[float, ...] = EFF_PT_EDGES) -> dict:
    """Signal efficiency at the card's fake rate in pT bins (cut set per bin on background):
    ``{"lo-hi GeV": efficiency}``, NaN where a bin has too few events."""
    pt = test.truth("pt")
    y = test.target
    score = 1.0 - probs[:, b]
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (pt >= lo) & (pt < hi)
        sig, bkg = sel & (y != b), sel & (y == b)
        eff = float("nan")
        if sig.sum() >= 5 and bkg.sum() >= 20:
            cut = cut_at_fake_rate(score[bkg], card.evaluation.fake_rate)
            eff = float(np.mean(score[sig] >= cut))
        out[f"{lo:g}-{hi:g} GeV"] = eff
    plot_curves({card.name: (pt_bin_centres(edges), np.asarray(list(out.values())))},
                plots_dir / "eff_vs_pt.png",
                "pT [GeV]", f"efficiency at {100 * card.evaluation.fake_rate:g} % fake rate",
                title=card.name)
    return out


@register_evaluator("regression")
def evaluate_offline_regression(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Resolution of an offline regression (target units) beside the best single observable
    linearly calibrated on the validation split (jet images: the pixel pT sum)."""
    test = splits["test"]
    y = test.target.astype(np.float64)
    pred = predict_outputs(model, card, test.images())
    metrics = _resolution(pred, y)
    baseline: dict = {}
    obs_val, obs_test = baseline_observables(card, splits["val"]), baseline_observables(card,
                                                                                         test)
    best = None
    for name, v in obs_val.items():
        if not np.all(np.isfinite(v)) or np.std(v) == 0:
            continue
        slope, offset = np.polyfit(v, splits["val"].target.astype(np.float64), 1)
        rms = float(np.sqrt(np.mean((slope * v + offset - splits["val"].target) ** 2)))
        if best is None or rms < best[1]:
            best = (name, rms, slope, offset)
    if best is not None:
        name, _, slope, offset = best
        baseline = {"observable": f"{name} (linear calibration on validation)",
                    **_resolution(slope * obs_test[name] + offset, y)}
    resid = {"network": pred - y}
    if baseline:
        resid["baseline"] = slope * obs_test[best[0]] + offset - y
    plot_score_distributions(resid, plots_dir / "residuals.png",
                             f"predicted - true {card.data.target}", title=card.name)
    return {"metrics": {"n_test": int(len(y)), **metrics}, "baseline": baseline}


def _resolution(pred: np.ndarray, y: np.ndarray) -> dict:
    r = pred - y
    q16, q84 = np.quantile(r, [0.16, 0.84])
    return {"rms": float(np.sqrt(np.mean(r**2))), "mean_residual": float(r.mean()),
            "half_width_68": float(0.5 * (q84 - q16)),
            "median_abs": float(np.median(np.abs(r)))}


def sculpting(score_bkg: np.ndarray, mass_bkg: np.ndarray, seed: int = 0) -> dict:
    """Mass sculpting of the background by a score: 1/JSD at 50 % background efficiency and
    dCor^2(score, mass) on (up to) 2,000 background events drawn with ``seed``."""
    sub = np.random.default_rng(seed).choice(len(score_bkg), size=min(2000, len(score_bkg)),
                                             replace=False)
    return {"inv_jsd_at_50pct_bkg_eff": inverse_jsd_at_background_efficiency(score_bkg,
                                                                             mass_bkg, 0.5),
            "dcor2_score_mass_bkg": distance_correlation_numpy(score_bkg[sub], mass_bkg[sub])}


def score_metrics(card, score: np.ndarray, y: np.ndarray, mass: np.ndarray, b: int) -> dict:
    """One anomaly score on test events: each class against background ``b`` (working
    points), their mean AUC, and the background mass sculpting."""
    ev = card.evaluation
    per = {}
    for k, name in enumerate(card.data.classes):
        sel = (y == k) | (y == b)
        if k != b and (y == k).any():
            per[name] = working_point_metrics(y[sel] == k, score[sel], ev.signal_eff,
                                              ev.fake_rate)
    bkg = y == b
    return {"auc": float(np.mean([v["auc"] for v in per.values()])), "per_class": per,
            **sculpting(score[bkg], mass[bkg])}


def anomaly_search(card, model, splits) -> tuple[dict, dict[str, np.ndarray], dict]:
    """Every anomaly score of :mod:`trigkit.learn.anomaly` on the test split, fitted on the
    training and validation splits only: (metrics per score, scores, fitted parameters)."""
    scorer = fit_scorer(model, card, splits["train"].images(), splits["val"].images())
    test = splits["test"]
    scores = scorer.scores(test.images())
    mass = test.truth(card.training.decorrelate).astype(np.float64)
    b = _background_index(card)
    per_score = {name: score_metrics(card, s, test.target, mass, b)
                 for name, s in scores.items()}
    return per_score, scores, scorer.summary()


def _anomaly_plots(card, scores: dict[str, np.ndarray], per_score: dict, test, base_score,
                   plots_dir) -> None:
    """ROC curves (each score, the jet mass), score distributions and sculpting per score."""
    y, classes = test.target, list(card.data.classes)
    b = _background_index(card)
    mass = test.truth(card.training.decorrelate).astype(np.float64)
    for name, score in scores.items():
        suffix = "" if name == "error" else f"_{name}"
        curves = {}
        for k, cls in enumerate(classes):
            sel = (y == k) | (y == b)
            if k == b or not (y == k).any():
                continue
            for label, s in ((name, score), ("jet mass", base_score)):
                fpr, tpr, _ = roc_curve(y[sel] == k, s[sel])
                curves[f"{label}: {cls}"] = (fpr, tpr, roc_auc(y[sel] == k, s[sel]))
        plot_roc(curves, plots_dir / f"roc{suffix}.png", title=f"{card.name}: {name} (test)")
        plot_score_distributions({c: score[y == k] for k, c in enumerate(classes)},
                                 plots_dir / f"scores{suffix}.png", SCORES[name],
                                 title=f"{card.name}: {name}")
        bkg = y == b
        plot_sculpting(mass[bkg], score[bkg], float(np.quantile(score[bkg], 0.5)),
                       plots_dir / f"sculpting{suffix}.png",
                       title=f"{card.name}, {name}: {classes[b]} at 50 % bkg. eff. (1/JSD = "
                             f"{per_score[name]['inv_jsd_at_50pct_bkg_eff']:.3g})")


@register_evaluator("anomaly")
def evaluate_anomaly(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """Autoencoder anomaly search: for every score of :mod:`trigkit.learn.anomaly` (plain
    reconstruction error, error normalised by the jet's complexity, latent density), the AUC
    of each anomalous class against the background and the mass sculpting of the background
    (1/JSD between the passing and failing mass distributions at 50 % background efficiency,
    distance correlation); beside the jet mass itself used as the anomaly score. The headline
    numbers (``auc``, ``per_class``, 1/JSD) are the plain error's; ``scores`` holds all."""
    test = splits["test"]
    y, b = test.target, _background_index(card)
    per_score, scores, fit = anomaly_search(card, model, splits)
    mass = test.truth(card.training.decorrelate).astype(np.float64)
    base_score = baseline_observables(card, test).get("jet mass", mass)
    base = score_metrics(card, base_score, y, mass, b)
    metrics = {"n_test": int(len(y)), **per_score["error"], "scores": per_score,
               "score_fit": fit, "background": card.data.classes[b],
               "decorrelate": card.training.decorrelate,
               "disco_lambda": card.training.disco_lambda,
               "adversary_lambda": card.training.adversary_lambda}
    baseline = {"observable": "jet mass (pixels)", **base}
    _anomaly_plots(card, scores, per_score, test, base_score, plots_dir)
    return {"metrics": metrics, "baseline": baseline}


def jet_features(images: np.ndarray, pixel: float) -> np.ndarray:
    """Per-jet features of the generator's two-sample test: log pT, log(1 + mass), log width,
    leading-pixel share, number of hit pixels and EM (channel 0) share, from pixels."""
    obs = image_observables(images, pixel)
    pt = np.where(obs["pt"] > 0, obs["pt"], 1.0)
    hits = (images.sum(axis=1) > 0).sum(axis=(1, 2))
    em = images[:, 0].sum(axis=(1, 2)) / pt if images.shape[1] > 1 else np.ones(len(pt))
    return np.stack([np.log(pt), np.log1p(obs["mass"]), np.log(obs["width"] + 1e-4),
                     obs["max_pixel"] / pt, hits, em], axis=1)


def _generated_class_test(card, test) -> np.ndarray:
    """The test images of the class the generator was trained on."""
    real = test.images().astype(np.float32)
    real = real[:, None] if real.ndim == 3 else real
    if card.data.train_on and len(card.data.classes) > 1:
        real = real[np.isin(test.target, [card.data.classes.index(c)
                                          for c in card.data.train_on])]
    return real


@register_evaluator("generative")
def evaluate_generative(card, generator, splits, plots_dir, progress: bool = False) -> dict:
    """Generator validation on the held-out test images of the class it imitates: jet
    observables from pixels and pixel intensities (KS statistic, Wasserstein distance), and
    classifier two-sample AUCs (real vs generated; 0.5 is perfect) on jet features and on
    pixels; the baseline is the same comparison between two independent halves of the real
    images (the statistical floor)."""
    test = splits["test"]
    real = _generated_class_test(card, test)
    pixel = test.context.get("pixel_size", 0.1)

    def observables(images: np.ndarray) -> dict[str, np.ndarray]:
        return image_observables(images, pixel)

    fake = sample(generator, len(real), seed=card.evaluation.seed)
    half = len(real) // 2
    metrics = compare_samples(real, fake, observables)
    baseline = compare_samples(real[:half], real[half:2 * half], observables)
    scale = float(np.median(real[real > 0]))
    for name, a, b in (("metrics", real, fake), ("baseline", real[:half], real[half:2 * half])):
        target = metrics if name == "metrics" else baseline
        target["two_sample_auc"] = {
            "jet_features": two_sample_auc(jet_features(a, pixel), jet_features(b, pixel),
                                           card.evaluation.seed),
            "pixels": two_sample_auc(np.log1p(a / scale), np.log1p(b / scale),
                                     card.evaluation.seed)}
    plots = plot_gan_validation(real, fake, observables, plots_dir)
    return {"metrics": {"n_test": int(len(real)), **metrics}, "baseline": baseline,
            "plots": [str(p) for p in plots]}
