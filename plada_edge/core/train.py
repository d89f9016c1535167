"""The training loop teachers (server) and students (device) share (paper §4 recipe).

AdamW, cosine schedule with a short linear warm-up, light augmentation (random shifts, optional
horizontal flips), a fixed seed, a checkpoint after every epoch and exact resume: each epoch's
shuffling, augmentation and dropout draw from generators seeded by (seed, epoch), so a run
interrupted after epoch e and resumed ends with the same weights as an uninterrupted one.
Images stay uint8 NHWC until the batch is viewed (plada_edge.core.view), exactly as in ONNX.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import atomic, native
from .config import TrainConfig
from .errors import ConfigError, ModelError, TargetError
from .progress import bar

CHECKPOINT = "checkpoint.pt"


def _augment(x, rng: np.random.Generator, shift: int, hflip: bool):
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    if shift > 0:
        padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
        dx = rng.integers(0, 2 * shift + 1, n)
        dy = rng.integers(0, 2 * shift + 1, n)
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if hflip:
        flip = torch.from_numpy(rng.random(n) < 0.5)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training checkpoint atomically (a kill never leaves a half-written one)."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by save_checkpoint; a corrupt or foreign file is a one-line ModelError."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types (pickle, zip, EOF) for a damaged file
        raise ModelError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}); pass --fresh to start over"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise ModelError(f"{path} is not a plada-edge checkpoint; pass --fresh to start over")
    return state


def predict(model, view, images: np.ndarray, batch_size: int = 512, with_features: bool = False):
    """Logits (and optionally pooled features) for uint8 NHWC images, in eval mode."""
    import torch

    from .models import feature_hook

    holder = feature_hook(model) if with_features else None
    model.eval()
    logits, feats = [], []
    with torch.inference_mode():
        for b0 in range(0, len(images), batch_size):
            batch = images[b0 : b0 + batch_size]
            batch = (
                batch if batch.flags.writeable and batch.flags.c_contiguous else np.array(batch)
            )  # memmaps are read-only
            out = model(view(torch.from_numpy(batch)))
            logits.append(out.float().numpy())
            if holder is not None:
                feats.append(holder["features"].float().numpy())
    c = logits[0].shape[1] if logits else 0
    out = np.concatenate(logits) if logits else np.zeros((0, c), np.float32)
    return (out, np.concatenate(feats)) if with_features else out


def accuracy(model, view, images: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, view, images).argmax(1) == labels).mean())


def fit(
    model,
    view,
    images: np.ndarray,
    labels: np.ndarray,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    sample_weight: np.ndarray | None = None,
    resume: bool = True,
    progress: bool | None = None,
    identity: dict | None = None,
) -> list[dict]:
    """Train ``model`` on uint8 NHWC ``images`` with integer ``labels``; checkpoint into out_dir.

    Returns the per-epoch history. ``identity`` names what the run trains on (payload or target
    hash, pack fingerprint, model settings); it is stored in every checkpoint, and resuming a
    checkpoint of another identity, config or image count is refused.
    """
    import torch

    if len(images) != len(labels):
        raise TargetError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise TargetError("nothing to train on (0 images)")
    torch.set_num_threads(cfg.threads or native.hardware_threads())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = (len(images) + cfg.batch_size - 1) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total - warm)))
    )
    history: list[dict] = []
    start_epoch = 0
    ckpt = out_dir / CHECKPOINT
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        mine = {"config": asdict(cfg), "n": len(images), "identity": identity}
        theirs = {key: state.get(key) for key in mine}
        if theirs != mine:
            differ = ", ".join(key for key in mine if theirs[key] != mine[key])
            raise ConfigError(
                f"{ckpt} belongs to another run (its {differ} differ); "
                "pass --fresh to start over, or choose another --out"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"]
    weights = None if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, np.float32))
    y_all = torch.from_numpy(np.asarray(labels, np.int64))
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=cfg.label_smoothing)
    shift = max(0, round(cfg.shift * view.m.shape[0] / 32)) if hasattr(view, "m") else cfg.shift
    with bar("training", (cfg.epochs - start_epoch) * steps_per_epoch, progress, unit="step") as b:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, epoch])
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
            order = rng.permutation(len(images))
            model.train()
            seen = correct = 0
            loss_sum = 0.0
            for s in range(steps_per_epoch):
                idx = np.sort(order[s * cfg.batch_size : (s + 1) * cfg.batch_size])
                xb = _augment(view(torch.from_numpy(np.ascontiguousarray(images[idx]))), rng, shift, cfg.hflip)
                yb = y_all[idx]
                out = model(xb)
                loss = loss_fn(out, yb)
                loss = (loss * weights[idx]).sum() / weights[idx].sum() if weights is not None else loss.mean()
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"training diverged at epoch {epoch + 1} (loss {float(loss)}); lower the learning rate"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(idx)
                correct += int((out.argmax(1) == yb).sum())
                loss_sum += float(loss.detach()) * len(idx)
                b.advance(1, epoch=epoch + 1, loss=loss_sum / seen, acc=correct / seen)
            record = {
                "epoch": epoch + 1,
                "loss": loss_sum / seen,
                "train_acc": correct / seen,
                "seconds": time.perf_counter() - t0,
            }
            if eval_set is not None:
                record["test_acc"] = accuracy(model, view, *eval_set)
            history.append(record)
            save_checkpoint(
                ckpt,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": asdict(cfg),
                    "n": len(images),
                    "identity": identity,
                },
            )
    return history
