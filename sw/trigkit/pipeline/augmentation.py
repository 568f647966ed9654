"""Generated-sample augmentation study of a classifier (``evaluation.augmentation``).

The question of the dark-photon jet talk: does a classifier trained on few real jets gain from
jets made by a generative model trained on those same jets? The card's network is retrained
(same architecture and events) on its N real training events of the generated class (all its
other training events unchanged), on N real + k x N generated, and on 2N real (the extra N from
an independent sample: the card's data with another seed, events of that class from its
splits), each with ``seeds`` training seeds; every model is evaluated on the card's
real test events. Models go to build/NAME/augmentation/ROW/seed_K/.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from trigkit.core.card import ModelCard, load_card
from trigkit.core.errors import TrigkitError
from trigkit.core.paths import PLOTS, model_dir
from trigkit.core.plots import plot_bars
from trigkit.core.report import read_report, update_report
from trigkit.evaluate import evaluate_model
from trigkit.learn.data import Split, input_codes, load_splits
from trigkit.learn.gan import sample
from trigkit.learn.train import Trainer, load_trained_model

Say = Callable[[str], None]
#: Offset of the data seed of the independent real sample (the "2N real" row).
EXTRA_SEED_OFFSET = 1_000_003


def as_preprocessed(card: ModelCard, gcard: ModelCard, fake: np.ndarray) -> np.ndarray:
    """Generated images in ``card``'s preprocessing: the generator may be trained on images
    without the unit-sum normalisation (so that pT stays an observable); any other difference
    in the generator settings is an error."""
    steps = list(card.data.generator.get("preprocess", []))
    gsteps = list(gcard.data.generator.get("preprocess", []))
    other = {k: v for k, v in card.data.generator.items() if k != "preprocess"}
    gother = {k: v for k, v in gcard.data.generator.items() if k != "preprocess"}
    if gsteps not in (steps, [s for s in steps if s != "normalise"]) or other != gother:
        raise TrigkitError(f"{gcard.name} generates images with data.generator "
                           f"{gcard.data.generator}, {card.name} trains on "
                           f"{card.data.generator}; they may differ only in the normalise step")
    if "normalise" in steps and "normalise" not in gsteps:
        total = fake.sum(axis=tuple(range(1, fake.ndim)), keepdims=True)
        fake = fake / np.where(total > 0, total, 1.0)
    return fake


def generated_images(card: ModelCard, generative: str, n: int, seed: int
                     ) -> tuple[np.ndarray, int]:
    """``n`` images of the trained generative card ``generative`` in ``card``'s input codes and
    preprocessing, and the label (in ``card``'s classes) of the class it imitates."""
    gcard = load_card(generative)
    if gcard.task != "generative" or len(gcard.data.train_on) != 1:
        raise TrigkitError(f"{gcard.name} must be a generative card trained on one class "
                           "(data.train_on: [CLASS]) to add generated events")
    cls = gcard.data.train_on[0]
    if cls not in card.data.classes:
        raise TrigkitError(f"{gcard.name} generates {cls!r} jets, not a class of {card.name}")
    fake = as_preprocessed(card, gcard, sample(load_trained_model(gcard), n, seed=seed))
    return input_codes(card, fake.reshape(n, *card.data.input_shape)), \
        card.data.classes.index(cls)


def extended(split: Split, images: np.ndarray, label: int) -> Split:
    """``split`` with ``images`` of class ``label`` appended (index -1, NaN extras)."""
    n = len(images)
    x = np.concatenate([split.images(), images.astype(split.images().dtype)])
    y = np.concatenate([split.target, np.full(n, label, np.int64)])
    extra = {k: np.concatenate([v, np.full(n, np.nan)]) for k, v in split.extra.items()}
    return Split(split.name, split.path, np.concatenate([split.index, np.full(n, -1)]), y, x,
                 extra, split.context)




def _extra_real(study: ModelCard, label: int, n: int, progress: bool) -> np.ndarray:
    """``n`` real images of class ``label`` from an independent sample (its splits in turn)."""
    other = study.with_overrides(study.name, {"data.seed": study.data.seed + EXTRA_SEED_OFFSET})
    images = np.concatenate([s.images()[s.target == label]
                             for s in load_splits(other, progress=progress).values()])
    if len(images) < n:
        raise TrigkitError(f"the independent sample of {study.name} holds {len(images)} "
                           f"events of class {label}, {n} are needed for the 2N row")
    return images[:n]


def _rows(study: ModelCard, spec, splits: dict[str, Split], progress: bool
          ) -> dict[str, tuple[Split, int]]:
    """Training split of every row and its count of generated events."""
    train = splits["train"]
    fake, label = generated_images(study, spec.generated_from, 1, 0)
    n = int((train.target == label).sum())
    rows = {"real_N": (train, 0)}
    for k in spec.factors:
        fake, _ = generated_images(study, spec.generated_from, k * n, study.evaluation.seed + k)
        rows[f"real_N_plus_{k}N_generated"] = (extended(train, fake, label), k * n)
    rows["real_2N"] = (extended(train, _extra_real(study, label, n, progress), label), 0)
    return rows


def augmentation_study(card: ModelCard, progress: bool = False, fresh: bool = False,
                       say: Say = print) -> dict:
    """Run the card's augmentation study; returns (and writes into report.json
    ``augmentation``) per row the AUC and 1/eps_B (signal efficiency ``evaluation.signal_eff``)
    of every seed, their mean and standard deviation, and plots/augmentation_{auc,rejection}.png.
    """
    spec = card.evaluation.augmentation
    t0 = time.perf_counter()
    study = card.with_overrides(f"{card.name}_augmentation", {
        "training.epochs": spec.epochs or card.training.epochs, "training.seeds": 1,
        "evaluation.variants": {}, "evaluation.augmentation": None})
    splits = load_splits(study, progress=progress)
    rows = _rows(study, spec, splits, progress)
    work = model_dir(card.name) / "augmentation"
    results: dict = {}
    for row, (train, n_generated) in rows.items():
        out = {"train_events": len(train), "generated_events": n_generated, "auc": [],
               "inv_bkg_eff": []}
        for i in range(spec.seeds):
            seeded = study.with_overrides(study.name, {"training.seed": card.training.seed + i})
            run_dir = work / row / f"seed_{i}"
            run = {**splits, "train": train}
            Trainer(seeded, out_dir=run_dir, progress=progress, splits=run,
                    verbose=False).fit(fresh=fresh)
            res = evaluate_model(seeded, load_trained_model(seeded, out_dir=run_dir), splits,
                                 run_dir)
            out["auc"].append(float(res["metrics"]["auc"]))
            out["inv_bkg_eff"].append(float(res["metrics"]["bkg_rejection_at_sig_eff"]))
        for key in ("auc", "inv_bkg_eff"):
            out[f"{key}_mean"] = float(np.mean(out[key]))
            out[f"{key}_std"] = float(np.std(out[key], ddof=1)) if spec.seeds > 1 else 0.0
        results[row] = out
        say(f"{card.name} augmentation {row}: AUC {out['auc_mean']:.4f} +- {out['auc_std']:.4f}"
            f", 1/eps_B {out['inv_bkg_eff_mean']:.1f} +- {out['inv_bkg_eff_std']:.1f} "
            f"({spec.seeds} seeds, {len(train)} training events)")
    report = {"generated_from": spec.generated_from, "seeds": spec.seeds,
              "epochs": study.training.epochs, "rows": results,
              "seconds": time.perf_counter() - t0, "plots": _plots(card, results)}
    plots = sorted({*read_report(model_dir(card.name)).get("plots", []), *report["plots"]})
    update_report(model_dir(card.name), {"augmentation": report, "plots": plots},
                  timings={"augmentation": report["seconds"]})
    return report


def _plots(card: ModelCard, results: dict) -> list[str]:
    """Mean AUC and 1/eps_B per row with the seed spread as error bars."""
    out = model_dir(card.name)
    (out / PLOTS).mkdir(parents=True, exist_ok=True)
    paths = []
    for key, label in (("auc", "AUC (real test events)"),
                       ("inv_bkg_eff", "1/eps_B at the signal-efficiency working point")):
        path = out / PLOTS / f"augmentation_{key}.png"
        plot_bars({row: r[f"{key}_mean"] for row, r in results.items()}, path, label,
                  title=f"{card.name}: real vs generated training events (mean +- std of seeds)",
                  errors={row: r[f"{key}_std"] for row, r in results.items()})
        paths.append(str(path.relative_to(out)))
    return paths
