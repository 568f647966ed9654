"""DisCo strength of an anomaly search (``evaluation.decorrelation``).

A mass-decorrelated search trades signal sensitivity for an unsculpted background: the DisCo
penalty ``lambda`` x dCor^2(error, mass) sets where on that curve the search sits. Choosing
lambda by the signal it finds would tune the search on the signal; here the autoencoder is
retrained (same events, same seed) at each lambda of the card, and the lambda shipped is the
smallest whose plain reconstruction error reaches ``target_inv_jsd`` (1/JSD of the background
mass at 50 % background efficiency) on the background events of the *validation* split, which
a search on data could do. Every lambda is then evaluated on the held-out test events with every
score, so the whole trade-off curve is shown beside the chosen point. Models go to
build/NAME/decorrelation/disco_LAMBDA/.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from trigkit.core.card import ModelCard
from trigkit.core.paths import PLOTS, model_dir
from trigkit.core.plots import plot_curves
from trigkit.core.report import read_report, update_report
from trigkit.evaluate.offline import anomaly_search, sculpting
from trigkit.learn.anomaly import errors_and_latents
from trigkit.learn.data import load_splits
from trigkit.learn.train import Trainer, load_trained_model

Say = Callable[[str], None]


def chosen_lambda(val_inv_jsd: dict[float, float], target: float) -> float | None:
    """The smallest lambda whose validation 1/JSD reaches ``target`` (None if none does)."""
    passing = [lam for lam, v in val_inv_jsd.items() if v >= target]
    return min(passing) if passing else None


def decorrelation_study(card: ModelCard, progress: bool = False, fresh: bool = False,
                        say: Say = print) -> dict:
    """Run the card's DisCo-strength study; returns (and writes into report.json
    ``decorrelation``) per lambda the validation 1/JSD of the plain error and the test metrics
    of every score, the chosen lambda and its test metrics, and writes
    plots/decorrelation_{tradeoff,validation}.png."""
    spec = card.evaluation.decorrelation
    t0 = time.perf_counter()
    splits = load_splits(card, progress=progress)
    classes = list(card.data.classes)
    b = classes.index(card.evaluation.background or classes[0])
    val = splits["val"]
    val_bkg = val.target == b
    val_mass = val.truth(card.training.decorrelate).astype(np.float64)[val_bkg]
    val_images = val.images()[val_bkg]
    runs: dict[str, dict] = {}
    for lam in sorted(spec.lambdas):
        study = card.with_overrides(f"{card.name}_disco", {
            "training.disco_lambda": lam, "training.adversary_lambda": 0.0,
            "training.epochs": spec.epochs or card.training.epochs,
            "evaluation.variants": {}, "evaluation.contamination": None,
            "evaluation.decorrelation": None})
        out = model_dir(card.name) / "decorrelation" / f"disco_{lam:g}"
        Trainer(study, out_dir=out, progress=progress, splits=splits,
                verbose=False).fit(fresh=fresh)
        model = load_trained_model(study, out_dir=out)
        per_score, _, _ = anomaly_search(study, model, splits)
        err_val, _ = errors_and_latents(model, study, val_images)
        val_jsd = sculpting(err_val, val_mass)["inv_jsd_at_50pct_bkg_eff"]
        runs[f"{lam:g}"] = {"lambda": lam, "val_inv_jsd": val_jsd, "scores": per_score}
        say(f"{card.name} DisCo lambda {lam:g}: validation 1/JSD {val_jsd:.3g}; test "
            + ", ".join(f"{s} 1/JSD={m['inv_jsd_at_50pct_bkg_eff']:.3g} AUC "
                        + " ".join(f"{c}={v['auc']:.3f}" for c, v in m["per_class"].items())
                        for s, m in per_score.items()))
    lam = chosen_lambda({r["lambda"]: r["val_inv_jsd"] for r in runs.values()},
                        spec.target_inv_jsd)
    result = {"lambdas": sorted(spec.lambdas), "target_inv_jsd": spec.target_inv_jsd,
              "epochs": spec.epochs or card.training.epochs, "runs": runs,
              "chosen_lambda": lam, "chosen": runs[f"{lam:g}"] if lam is not None else None,
              "validation_background_events": int(val_bkg.sum()),
              "seconds": time.perf_counter() - t0}
    say(f"{card.name} DisCo: chosen lambda {lam if lam is not None else 'none'} (smallest with "
        f"validation 1/JSD >= {spec.target_inv_jsd:g})")
    result["plots"] = _plots(card, result)
    plots = sorted({*read_report(model_dir(card.name)).get("plots", []), *result["plots"]})
    update_report(model_dir(card.name), {"decorrelation": result, "plots": plots},
                  timings={"decorrelation": result["seconds"]})
    return result


def _plots(card: ModelCard, result: dict) -> list[str]:
    """Test AUC of each signal versus test 1/JSD (one point per lambda, plain error), and the
    validation 1/JSD versus lambda with the target."""
    out = model_dir(card.name)
    (out / PLOTS).mkdir(parents=True, exist_ok=True)
    runs = list(result["runs"].values())
    jsd = np.array([r["scores"]["error"]["inv_jsd_at_50pct_bkg_eff"] for r in runs])
    signals = list(runs[0]["scores"]["error"]["per_class"])
    series = {f"{sig} (error)": (jsd, np.array([r["scores"]["error"]["per_class"][sig]["auc"]
                                                for r in runs])) for sig in signals}
    trade = out / PLOTS / "decorrelation_tradeoff.png"
    plot_curves(series, trade, "background 1/JSD at 50 % efficiency (test)", "AUC (test)",
                title=f"{card.name}: DisCo lambda " + ", ".join(f"{r['lambda']:g}" for r in runs),
                hline=0.5)
    lams = np.array([r["lambda"] for r in runs])
    valp = out / PLOTS / "decorrelation_validation.png"
    plot_curves({"validation (chooses lambda)": (lams, np.array([r["val_inv_jsd"] for r in runs])),
                 "test": (lams, jsd)}, valp, "DisCo lambda", "background 1/JSD at 50 % efficiency",
                title=f"{card.name}: target {result['target_inv_jsd']:g}", log_x=True,
                hline=result["target_inv_jsd"])
    return [str(p.relative_to(out)) for p in (trade, valp)]
