"""The training core shared by every model: deterministic, resumable, with early stopping.

Checkpoints (``last.pt`` every epoch, ``best.pt`` on validation improvement) are written
atomically and hold the model, optimiser, scheduler, history and early-stopping state, so an
interrupted run resumes from its last completed epoch and continues exactly as if it had not
stopped (shuffling and dropout are seeded per epoch).

Longer than 500 lines: one class, the training loop shared by every task with its per-task
losses (cross entropy, regression, distillation, reconstruction with decorrelation, the
Bayesian ELBO, the density NLL), kept together so that no task gets a loop of its own.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from trigkit.core.card import ModelCard, load_card
from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path, write_json_atomic
from trigkit.core.paths import (
    BEST_CHECKPOINT,
    BUILD,
    HISTORY_JSON,
    LAST_CHECKPOINT,
    METRICS_CSV,
    model_dir,
)

from .checkpoint import read_checkpoint, save_checkpoint
from .data import Split, augmenter, load_splits
from .decorrelate import MassAdversary, adversary_loss, distance_correlation, mass_bins
from .frontend import FrontEndNet
from .gan import GANSpec, load_generator, train_wgan_gp
from .models import (
    anomaly_score,
    build_model,
    image_shape,
    reconstruction_target,
    restore_runtime_quant_state,
    runtime_quant_state,
    to_input,
    weight_tensors,
)
from .pixel_gan import load_pixel_generator, pixel_gan_spec, train_pixel_gan


def load_checkpoint(card: ModelCard, path: Path) -> dict[str, Any]:
    """Load a checkpoint and check that it belongs to ``card``'s architecture."""
    if not path.is_file():
        raise TrigkitError(f"checkpoint {path} not found; train the model first "
                           f"(trigkit train --model {card.name})")
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "architecture" not in ckpt:
        raise TrigkitError(f"{path} is not a trigkit checkpoint")
    want = card.architecture_dict()
    if ckpt["architecture"] != want:
        diff = [k for k in want if ckpt["architecture"].get(k) != want[k]]
        raise TrigkitError(
            f"checkpoint {path} was trained with a different architecture ({', '.join(diff)} "
            f"differ from model card {card.name}); delete it or train with --fresh"
        )
    return ckpt


def load_trained_model(card: ModelCard, which: str = "best", build: Path = BUILD,
                       out_dir: Path | None = None) -> nn.Module:
    """The card's network with the weights of its ``best`` or ``last`` checkpoint, eval mode
    (for WGAN-GP models: the generator of the last epoch). ``out_dir`` overrides the
    model directory (evaluation variants)."""
    out_dir = out_dir or model_dir(card.name, build)
    if card.architecture.kind == "pixel_wgan":
        return load_pixel_generator(out_dir, image_shape(card), pixel_gan_spec(card))
    if card.task == "generative":
        return load_generator(out_dir, image_shape(card), card.architecture.latent_dim).eval()
    ckpt = load_checkpoint(card, out_dir / f"{which}.pt")
    model = build_model(card)
    model.load_state_dict(ckpt["model"])
    restore_runtime_quant_state(model, ckpt.get("runtime_quant", {}))
    return model.eval()


def _image_batch(split: Split) -> np.ndarray:
    """A split's images as float32 (N, C, H, W)."""
    images = split.images().astype(np.float32)
    return images[:, None] if images.ndim == 3 else images


def monitored_score(monitor: str, row: dict[str, float]) -> float:
    """What selects best.pt and drives early stopping (lower is better): ``row[monitor]`` of a
    validation row (``val_loss`` and the metrics), negated for ``val_accuracy``."""
    return -row[monitor] if monitor == "val_accuracy" else row[monitor]


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    stopped: str
    seconds: float


class Trainer:
    """Trains one model card. ``fit()`` resumes from ``last.pt`` unless ``fresh``."""

    def __init__(self, card: ModelCard, out_dir: Path | None = None, progress: bool = True,
                 splits: dict[str, Split] | None = None, build: Path = BUILD,
                 verbose: bool = True):
        self.card = card
        self.build = build
        self.out = out_dir or model_dir(card.name, build)
        self.progress = progress
        self.verbose = verbose
        self.spec = card.training
        self._splits = splits
        self.teacher: nn.Module | None = None
        self.adversary: nn.Module | None = None
        self.adversary_opt: torch.optim.Optimizer | None = None
        self.mass_edges: np.ndarray | None = None
        self._n_train = 0

    # -- setup -------------------------------------------------------------------------------
    def _loss_kind(self) -> str:
        if self.card.task == "anomaly":
            return "reconstruction"
        if self.card.task == "density":
            return "nll"
        if self.card.architecture.bayesian:
            return "elbo"
        if self.spec.loss != "auto":
            return self.spec.loss
        return "cross_entropy" if self.card.task == "classification" else "huber"

    def _check_loss(self) -> None:
        kind = self._loss_kind()
        if kind in ("nll", "elbo"):
            if self.spec.loss != "auto" or self.spec.distill is not None:
                raise TrigkitError(f"{self.card.name}: a {kind} model trains on its own "
                                   "likelihood; set training.loss: auto and no distillation")
            return
        if self.card.task == "anomaly":
            if self.spec.loss not in ("auto", "mse"):
                raise TrigkitError(f"task anomaly trains on the reconstruction error; "
                                   f"training.loss {self.spec.loss} does not apply (use auto)")
            return
        if (self.card.task == "classification") != (kind == "cross_entropy"):
            raise TrigkitError(f"training.loss {kind} does not fit task {self.card.task}")

    @property
    def _decorrelating(self) -> bool:
        return self.card.task == "anomaly" and (self.spec.disco_lambda > 0
                                                or self.spec.adversary_lambda > 0)

    def _setup_adversary(self, train: Split) -> None:
        """Mass-bin edges from the training background and the adversary network."""
        if not self._decorrelating:
            return
        self.mass_edges, _ = mass_bins(train.truth(self.spec.decorrelate),
                                       self.spec.adversary_bins)
        if self.spec.adversary_lambda > 0:
            torch.manual_seed(self.spec.seed + 1)
            self.adversary = MassAdversary(n_bins=self.spec.adversary_bins)
            self.adversary_opt = torch.optim.Adam(self.adversary.parameters(),
                                                  lr=self.spec.adversary_lr)

    def _mass_bin(self, mass: np.ndarray) -> torch.Tensor:
        idx = np.clip(np.searchsorted(self.mass_edges[1:-1], mass, side="right"), 0,
                      len(self.mass_edges) - 2)
        return torch.as_tensor(idx, dtype=torch.long)

    def _anomaly_loss(self, model: nn.Module, x: torch.Tensor, truth: dict | None,
                      train_adversary: bool) -> torch.Tensor:
        """Reconstruction error (+ DisCo penalty, - adversary loss) of one batch."""
        err = anomaly_score(model, x)
        loss = err.mean()
        if not self._decorrelating or truth is None:
            return loss
        mass = truth[self.spec.decorrelate]
        if self.spec.disco_lambda > 0:
            loss = loss + self.spec.disco_lambda * distance_correlation(
                err, torch.as_tensor(mass, dtype=err.dtype))
        if self.adversary is not None:
            score = torch.log(err + 1e-12)[:, None]  # scale-free input for the adversary
            bins = self._mass_bin(mass)
            if train_adversary:
                adv = adversary_loss(self.adversary, score.detach(), bins)
                self.adversary_opt.zero_grad(set_to_none=True)
                adv.backward()
                self.adversary_opt.step()
            loss = loss - self.spec.adversary_lambda * adversary_loss(self.adversary, score, bins)
        return loss

    def _build(self) -> nn.Module:
        torch.manual_seed(self.spec.seed)
        return build_model(self.card)

    def _optimiser(self, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        """Optimiser and schedule over the model's parameters as they are now (after a
        checkpoint was loaded: Brevitas replaces some parameter objects when loading)."""
        params = model.parameters()
        if self.spec.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=self.spec.lr, momentum=0.9,
                                  weight_decay=self.spec.weight_decay)
        elif self.spec.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=self.spec.lr, weight_decay=self.spec.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=self.spec.lr, weight_decay=self.spec.weight_decay)
        if self.spec.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.spec.epochs)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        return opt, sched

    def _load_teacher(self) -> None:
        d = self.spec.distill
        if d is None or not d.teacher:
            return
        teacher_card = load_card(d.teacher)
        if teacher_card.n_outputs != self.card.n_outputs or teacher_card.task != self.card.task:
            raise TrigkitError(f"teacher {d.teacher} has a different task or number of outputs")
        self.teacher_card = teacher_card
        path = model_dir(d.teacher, self.build) / BEST_CHECKPOINT
        if not path.is_file():
            raise TrigkitError(f"teacher {d.teacher} has no checkpoint {path}; train it first "
                               f"(trigkit train --model {d.teacher})")
        self.teacher = load_trained_model(teacher_card, "best", self.build)

    def _fit_gan(self, splits: dict[str, Split], fresh: bool, epochs: int | None
                 ) -> TrainResult:
        """WGAN-GP models: the critic/generator loop of trigkit.gan (image networks) or of
        trigkit.learn.pixel_gan (hit-pixel sets; best epoch by the validation KS distance)."""
        images = _image_batch(splits["train"])
        if self.card.architecture.kind == "pixel_wgan":
            pspec = pixel_gan_spec(self.card, splits["train"].context.get("pixel_size", 1.0),
                                   epochs)
            t0 = time.perf_counter()
            summary = train_pixel_gan(images, _image_batch(splits["val"]), pspec, self.out,
                                      fresh=fresh, progress=self.progress)
            return TrainResult(summary["history"], summary["best_epoch"], summary["best_ks"],
                               summary["stopped"], time.perf_counter() - t0)
        gspec = GANSpec(latent_dim=self.card.architecture.latent_dim,
                        critic_steps=self.spec.critic_steps, gp_lambda=self.spec.gp_lambda,
                        lr=self.spec.lr, batch_size=self.spec.batch_size,
                        epochs=epochs or self.spec.epochs, seed=self.spec.seed,
                        max_minutes=self.spec.max_minutes)
        t0 = time.perf_counter()
        summary = train_wgan_gp(images, gspec, self.out, fresh=fresh, progress=self.progress)
        history = summary.get("history", [])
        return TrainResult(history, len(history), float("nan"),
                           summary.get("stopped", "completed"), time.perf_counter() - t0)

    # -- one step ----------------------------------------------------------------------------
    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self.card.task == "classification":
            return torch.as_tensor(y, dtype=torch.long)
        return torch.as_tensor(y, dtype=torch.float32) / self.card.data.target_scale

    def _loss(self, out: torch.Tensor, y: torch.Tensor, x_img: np.ndarray,
              model: nn.Module | None = None) -> torch.Tensor:
        kind = self._loss_kind()
        if kind == "reconstruction":  # out is the reconstruction of the (scaled) input
            return ((out - reconstruction_target(model, to_input(x_img, self.card))) ** 2
                    ).mean()
        if kind == "cross_entropy":
            loss = nn.functional.cross_entropy(out, y)
        else:
            pred = out[:, 0]
            loss = (nn.functional.huber_loss(pred, y, delta=self.spec.huber_delta)
                    if kind == "huber" else nn.functional.mse_loss(pred, y))
        if self.teacher is not None:
            d = self.spec.distill
            with torch.no_grad():
                t_out = self.teacher(to_input(x_img, self.teacher_card))
            if kind == "cross_entropy":
                temp = d.temperature
                soft = nn.functional.kl_div(
                    nn.functional.log_softmax(out / temp, dim=1),
                    nn.functional.softmax(t_out / temp, dim=1), reduction="batchmean",
                ) * temp * temp
            else:
                soft = nn.functional.huber_loss(out[:, 0], t_out[:, 0],
                                                delta=self.spec.huber_delta)
            loss = (1 - d.weight) * loss + d.weight * soft
        return loss

    def _batch_loss(self, model: nn.Module, x: np.ndarray, y: np.ndarray, n_train: int
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, outputs) of one batch of a classifier, regression or density model;
        Bayesian models: -ELBO per training event (outputs at the posterior mean are only
        computed outside training, for the validation metrics)."""
        xt = to_input(x, self.card)
        kind = self._loss_kind()
        if kind == "nll":
            return model(xt).mean(), None
        if kind == "elbo":
            out = None if model.training else model(xt)
            return model.negative_elbo(xt, self._targets(y), n_train), out
        out = model(xt)
        return self._loss(out, self._targets(y), x), out

    def _penalty(self, model: nn.Module) -> torch.Tensor | float:
        if self.spec.sparsity_l1 <= 0:
            return 0.0
        return self.spec.sparsity_l1 * sum(w.abs().sum() for w in weight_tensors(model))

    def _evaluate_loss(self, model: nn.Module, split: Split) -> tuple[float, dict[str, float]]:
        model.eval()
        total, n = 0.0, 0
        correct = 0
        abs_err: list[np.ndarray] = []
        with torch.no_grad():
            for x, y in split.batches(1024):
                yt = self._targets(y)
                if self.card.task == "anomaly":
                    out = model(to_input(x, self.card))
                    total += float(self._loss(out, yt, x, model)) * len(y)
                    n += len(y)
                    continue
                loss, out = self._batch_loss(model, x, y, self._n_train)
                total += float(loss) * len(y)
                n += len(y)
                if out is None:
                    continue
                if self.card.task == "classification":
                    correct += int((out.argmax(1) == yt).sum())
                else:
                    abs_err.append(((out[:, 0] - yt) * self.card.data.target_scale).numpy())
        metrics = {}
        if self._loss_kind() == "nll":
            return total / n, metrics
        if self.card.task == "classification":
            metrics["val_accuracy"] = correct / n
        elif self.card.task == "regression":
            err = np.concatenate(abs_err)
            metrics["val_rmse"] = float(np.sqrt(np.mean(err**2)))
            metrics["val_median_abs"] = float(np.median(np.abs(err)))
        return total / n, metrics

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, fresh: bool = False, epochs: int | None = None) -> TrainResult:
        """Train (or resume) and return the history; writes checkpoints and metrics files."""
        self._check_loss()
        torch.set_num_threads(self.spec.threads)
        torch.use_deterministic_algorithms(True)
        self.out.mkdir(parents=True, exist_ok=True)
        splits = self._splits or load_splits(self.card, progress=self.progress)
        if self.card.task == "generative":
            return self._fit_gan(splits, fresh, epochs)
        self._load_teacher()
        self._setup_adversary(splits["train"])
        augment = augmenter(self.card)
        self._n_train = len(splits["train"])
        model = self._build()
        n_epochs = epochs or self.spec.epochs
        state = {"epoch": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0,
                 "history": [], "stopped": ""}
        last = self.out / LAST_CHECKPOINT
        ckpt = load_checkpoint(self.card, last) if last.is_file() and not fresh else None
        if ckpt is not None:  # the model first: the optimiser must hold its live parameters
            model.load_state_dict(ckpt["model"])
            restore_runtime_quant_state(model, ckpt.get("runtime_quant", {}))
        opt, sched = self._optimiser(model)
        if ckpt is not None:
            state = self._resume(ckpt, opt, sched)
            if state["stopped"] == "early_stopping" or state["epoch"] >= n_epochs:
                if self.verbose:
                    print(f"{self.card.name}: already trained ({state['epoch']} epochs, "
                          f"{state['stopped'] or 'completed'}); pass --fresh to retrain")
                return self._result(state, 0.0)
            if self.verbose:
                print(f"{self.card.name}: resuming after epoch {state['epoch']}"
                      + (" (the last run hit its time budget)" if state["stopped"] else ""))
            state["stopped"] = ""
        run, splits = self._fixed_front_end(model, splits, augment)
        t_start = time.perf_counter()
        budget_s = self.spec.max_minutes * 60
        for epoch in range(state["epoch"], n_epochs):
            t0 = time.perf_counter()
            train_loss = self._train_epoch(run, opt, splits["train"], epoch, n_epochs,
                                           augment, last)
            sched.step()
            val_loss, val_metrics = self._evaluate_loss(run, splits["val"])
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                   **val_metrics, "lr": opt.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - t0}
            state["history"].append(row)
            state["epoch"] = epoch + 1
            score = monitored_score(self.spec.monitor, {"val_loss": val_loss, **val_metrics})
            improved = score < state["best_val"]
            if improved:
                state.update(best_val=score, best_epoch=epoch + 1, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            if state["bad_epochs"] >= self.spec.patience:
                state["stopped"] = "early_stopping"
            elif time.perf_counter() - t_start > budget_s and epoch + 1 < n_epochs:
                state["stopped"] = "time_budget"
            self._save_checkpoints(model, opt, sched, state, improved)
            if self.verbose:
                extra = " ".join(f"{k}={v:.4g}" for k, v in val_metrics.items())
                print(f"  {self.card.name} epoch {epoch + 1}: train {row['train_loss']:.4f} "
                      f"val {val_loss:.4f} "
                      f"{extra} ({row['seconds']:.1f} s){' *' if improved else ''}",
                      flush=True)
            if state["stopped"]:
                break
        return self._result(state, time.perf_counter() - t_start)

    def _fixed_front_end(self, model: nn.Module, splits: dict[str, Split], augment
                         ) -> tuple[nn.Module, dict[str, Split]]:
        """A fixed front end runs once per split, not once per epoch: the splits become its
        features and training runs the learned part (``model.net``, the same parameters, so
        checkpoints and results are unchanged); a distillation teacher with the same front end
        is swapped for its own learned part (``self.teacher = teacher.net``). Otherwise, or with
        augmentation or streamed data, everything runs on the images as usual."""
        teacher = self.teacher
        if (not isinstance(model, FrontEndNet) or augment is not None
                or self.card.task not in ("classification", "regression")
                or any(s.hits is None for s in splits.values())):
            return model, splits
        if teacher is not None and not (
                isinstance(teacher, FrontEndNet)
                and type(teacher.front_end) is type(model.front_end)
                and teacher.front_end.width == model.front_end.width):
            return model, splits
        if teacher is not None:
            self.teacher = teacher.net
        return model.net, {name: self._front_end_split(model.front_end, s)
                           for name, s in splits.items()}

    def _front_end_split(self, front_end: nn.Module, split: Split) -> Split:
        feats = []
        with torch.no_grad():
            for s in range(0, len(split), 4096):
                x = to_input(split.hits[s:s + 4096], self.card)
                feats.append(front_end(x).numpy())
        hits = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
        return Split(split.name, split.path, split.index, split.target, hits, split.extra,
                     split.context)

    def _resume(self, ckpt: dict[str, Any], opt: torch.optim.Optimizer, sched
                ) -> dict[str, Any]:
        """Restore optimiser, scheduler (and adversary) from a checkpoint; its state."""
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if self.adversary is not None:
            self.adversary.load_state_dict(ckpt["adversary"])
            self.adversary_opt.load_state_dict(ckpt["adversary_optimizer"])
        return ckpt["state"]

    def _train_epoch(self, model: nn.Module, opt: torch.optim.Optimizer, train: Split,
                     epoch: int, n_epochs: int, augment, last: Path) -> float:
        """One pass over the training split (seeded per epoch); the mean training loss."""
        torch.manual_seed(self.spec.seed * 100003 + epoch)  # dropout etc. per epoch
        model.train()
        running, seen = 0.0, 0
        shuffle_seed = self.spec.seed * 7919 + epoch
        keys = (self.spec.decorrelate,) if self._decorrelating else ()
        batches = train.batches(self.spec.batch_size, shuffle_seed=shuffle_seed, keys=keys)
        aug_rng = np.random.default_rng(shuffle_seed + 1)
        n_batches = -(-len(train) // self.spec.batch_size)
        bar = self._bar(n_batches, f"{self.card.name} epoch {epoch + 1}/{n_epochs}")
        for step, batch in enumerate(batches):
            x, y = batch[0], batch[1]
            if augment is not None:
                x = augment(x, aug_rng)
            if self.card.task == "anomaly":
                loss = self._anomaly_loss(model, to_input(x, self.card),
                                          batch[2] if keys else None, train_adversary=True)
            else:
                loss, _ = self._batch_loss(model, x, y, len(train))
            if not torch.isfinite(loss):
                raise TrigkitError(
                    f"{self.card.name}: loss became {loss.item()} at epoch {epoch + 1} step "
                    f"{step}; lower training.lr (now {self.spec.lr:g}) or check the inputs. "
                    f"The last good checkpoint is {last}"
                )
            total = loss + self._penalty(model)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            running += loss.item() * len(y)
            seen += len(y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running / seen:.4f}")
        if bar is not None:
            bar.close()
        return running / seen

    def _save_checkpoints(self, model: nn.Module, opt: torch.optim.Optimizer, sched,
                          state: dict[str, Any], improved: bool) -> None:
        """``last.pt`` every epoch, ``best.pt`` on improvement, and the history files."""
        ckpt = {"model": model.state_dict(), "runtime_quant": runtime_quant_state(model),
                "optimizer": opt.state_dict(),
                **({"adversary": self.adversary.state_dict(),
                    "adversary_optimizer": self.adversary_opt.state_dict()}
                   if self.adversary is not None else {}),
                "scheduler": sched.state_dict(), "state": state,
                "architecture": self.card.architecture_dict(), "card": self.card.to_dict()}
        if improved:
            save_checkpoint(ckpt, self.out / BEST_CHECKPOINT)
        save_checkpoint(ckpt, self.out / LAST_CHECKPOINT)
        self._write_history(state["history"])

    def _bar(self, total: int, desc: str):
        if not self.progress:
            return None
        return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)

    def _write_history(self, history: list[dict[str, float]]) -> None:
        write_json_atomic(self.out / HISTORY_JSON, history)
        buf = io.StringIO()
        keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        with atomic_path(self.out / METRICS_CSV) as tmp:
            tmp.write_text(buf.getvalue())

    @staticmethod
    def _result(state: dict[str, Any], seconds: float) -> TrainResult:
        best = state["best_epoch"]
        best_loss = state["history"][best - 1]["val_loss"] if best >= 1 else math.inf
        return TrainResult(state["history"], best, best_loss, state["stopped"] or "completed",
                           seconds)
