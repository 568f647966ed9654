"""The measured-observables tables of sw/docs/jets.md: toy jets of each class, default settings.

Prints, per class, the particle-level and pixel masses, the width, the mean number of prongs,
the hadronic and invisible fractions (mean), the hardest pixel's share of the pixel pT and the
number of non-zero pixels, then the area under the ROC curve of single observables for each
signal class against QCD. Class k uses seed + k.

    PYTHONPATH=sw python sw/bench/jet_observables.py [--jets 20000] [--size 40] [--seed 1]
        [--config '{"darkshower_r_inv": 0.0}'] [--classes qcd darkshower]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from trigkit.learn.metrics import roc_auc
from trigkit.offline.jetprep import image_observables
from trigkit.offline.jets import LABEL_NAMES, JetConfig, generate

#: Single observables whose separating power against QCD is printed.
AUC_KEYS = ("pixel_mass", "width", "had_fraction", "n_pixels", "max_pixel_frac")


def observables(cfg: JetConfig, kind: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """Per-jet truth and image observables of ``n`` jets of class ``kind``."""
    d = generate(cfg, kind, n, seed)
    obs = image_observables(d["images"], cfg.pixel)
    return {
        "jet_mass": d["jet_mass"], "pixel_mass": d["pixel_mass"], "width": obs["width"],
        "n_prongs": d["n_prongs"].astype(np.float64), "had_fraction": d["had_fraction"],
        "invisible": d["invisible_pt_fraction"],
        "max_pixel_frac": obs["max_pixel"] / np.where(obs["pt"] > 0, obs["pt"], 1.0),
        "n_pixels": (d["images"].sum(axis=1) > 0).sum(axis=(1, 2)).astype(np.float64),
    }


def _gev(v: float) -> str:
    return f"{v:.1f}" if abs(v) < 10 else f"{v:.0f}"


def _row(kind: str, o: dict[str, np.ndarray]) -> str:
    q25, q50, q75 = np.percentile(o["pixel_mass"], [25, 50, 75])
    return (
        f"| {kind} | {_gev(np.median(o['jet_mass']))} / {_gev(o['jet_mass'].mean())} GeV "
        f"| {q50:.0f} GeV ({q25:.0f}-{q75:.0f}) "
        f"| {o['width'].mean():.3f} ({np.median(o['width']):.3f}) "
        f"| {o['n_prongs'].mean():.2f} | {o['had_fraction'].mean():.2f} ± "
        f"{o['had_fraction'].std():.2f} | {o['invisible'].mean():.3f} "
        f"| {np.median(o['max_pixel_frac']):.2f} | {o['n_pixels'].mean():.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=20000, help="jets per class")
    ap.add_argument("--size", type=int, default=40, help="image size (pixels per side)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default="{}", help="JetConfig settings (JSON) beside the size")
    ap.add_argument("--classes", nargs="+", choices=LABEL_NAMES, default=list(LABEL_NAMES))
    args = ap.parse_args()
    cfg = JetConfig.from_dict({**json.loads(args.config), "image_size": args.size})
    classes = ["qcd", *(k for k in args.classes if k != "qcd")]
    res = {kind: observables(cfg, kind, args.jets, args.seed + LABEL_NAMES.index(kind))
           for kind in classes}
    print(f"{args.jets} jets per class, {args.size} x {args.size}, seed {args.seed}, "
          f"settings {args.config}\n")
    print("| class | particle-level mass median / mean | pixel mass median (IQR) "
          "| width mean (median) | prongs | hadronic fraction | invisible pT fraction "
          "| max pixel / pixel pT (median) | non-zero pixels (mean) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, o in res.items():
        print(_row(kind, o))
    print("\nAUC against QCD (direction-free: max(AUC, 1 - AUC))\n")
    print("| class | " + " | ".join(AUC_KEYS) + " |")
    print("|---|" + "---|" * len(AUC_KEYS))
    for kind in classes[1:]:
        aucs = []
        for key in AUC_KEYS:
            is_sig = np.r_[np.ones(args.jets, bool), np.zeros(args.jets, bool)]
            auc = roc_auc(is_sig, np.r_[res[kind][key], res["qcd"][key]])
            aucs.append(f"{max(auc, 1.0 - auc):.2f}")
        print(f"| {kind} | " + " | ".join(aucs) + " |")


if __name__ == "__main__":
    main()
