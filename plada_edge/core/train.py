"""The training loop teachers (server) and students (device) share (paper §4 recipe).

AdamW, cosine schedule with a short linear warm-up, light augmentation (random shifts, optional
horizontal flips), a fixed seed, a checkpoint after the last epoch and after any epoch that ends
CHECKPOINT_SECONDS or more after the previous one, and exact resume: each epoch's shuffling,
augmentation and dropout draw from generators seeded by (seed, epoch), so a run interrupted after
a checkpoint at epoch e and resumed ends with the same weights as an uninterrupted one.
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
from .config import CHECKPOINT_SECONDS, TrainConfig
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
        # one gather for the whole batch (a per-image loop costs a kernel launch per image on a GPU)
        dev = x.device
        rows = torch.from_numpy(dy[:, None] + np.arange(h)).to(dev)
        cols = torch.from_numpy(dx[:, None] + np.arange(w)).to(dev)
        n_idx = torch.arange(n, device=dev)[:, None, None, None]
        c_idx = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]
    if hflip:
        flip = torch.from_numpy(rng.random(n) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def trivial_augment(raw, seed: int):
    """TrivialAugmentWide (Müller & Hutter 2021) on each uint8 NHWC image: one random op, random strength."""
    import torch
    from torchvision.transforms import v2

    op = v2.TrivialAugmentWide()
    x = raw.permute(0, 3, 1, 2).cpu()
    with torch.random.fork_rng(devices=[]):  # a draw of its own per (run seed, epoch, step): exact resume
        torch.manual_seed(seed)
        out = torch.stack([op(img) for img in x])
    return out.permute(0, 2, 3, 1).contiguous().to(raw.device)


def param_groups(model, lr: float, backbone_lr: float) -> list[dict]:
    """The task head (plada_edge.core.models.head_layer) at ``lr``, everything else at ``lr * backbone_lr``."""
    from .models import head_layer

    head = head_layer(model)
    head_ids = {id(p) for p in head.parameters()}
    rest = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": list(head.parameters()), "lr": lr}, {"params": rest, "lr": lr * backbone_lr}]


def frozen_features(model, view, images: np.ndarray, hflip: bool, batch_size: int, device: str):
    """A frozen backbone's pooled features, once per image (and once flipped with ``hflip``): (variants, n, d).

    A linear probe needs the backbone only once, so its epochs cost a matrix product each. Shifts
    and TrivialAugment, which would change the features every epoch, are not applied.
    """
    import torch

    from .models import head_layer

    class Flipped(torch.nn.Module):  # the view, mirrored left-right as _augment's flips are
        def __init__(self):
            super().__init__()
            self.view = view

        def forward(self, x):
            return self.view(x).flip(3)

    variants = [
        torch.from_numpy(predict(model, v, images, batch_size, with_features=True, device=device)[1])
        for v in ([view, Flipped()] if hflip else [view])
    ]
    return torch.stack(variants).to(device), head_layer(model)


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


def predict(model, view, images: np.ndarray, batch_size: int = 512, with_features: bool = False, device: str = "cpu"):
    """Logits (and optionally pooled features) for uint8 NHWC images, in eval mode, on ``device``."""
    import torch

    from .models import feature_hook

    holder = feature_hook(model) if with_features else None
    model.eval()
    model.to(device)
    view = view.to(device)
    logits, feats = [], []
    try:
        with torch.inference_mode():
            for _, batch in batches(images, range(0, len(images), batch_size), batch_size, device):
                out = model(view(batch))
                logits.append(out.float().cpu().numpy())
                if holder is not None:
                    feats.append(holder["features"].float().cpu().numpy())
    finally:
        if holder is not None:  # a hook left behind would fire in every later forward (and export)
            holder["handle"].remove()
    c = logits[0].shape[1] if logits else 0
    out = np.concatenate(logits) if logits else np.zeros((0, c), np.float32)
    return (out, np.concatenate(feats)) if with_features else out


def accuracy(model, view, images: np.ndarray, labels: np.ndarray, device: str = "cpu") -> float:
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, view, images, device=device).argmax(1) == labels).mean())


def batches(images: np.ndarray, plan, batch_size: int, device: str = "cpu"):
    """Yield (rows, uint8 tensor on ``device``) for each entry of ``plan``, gathered one batch ahead.

    ``plan`` yields either a start offset (contiguous batches) or an array of row indices. A helper
    thread gathers the next batch while the caller computes on the current one; on CUDA the batch
    goes through pinned memory and is copied asynchronously.
    """
    import queue
    import threading

    import torch

    cuda = str(device).startswith("cuda")
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def gather():
        try:
            for item in plan:
                rows = item if isinstance(item, np.ndarray) else np.arange(item, min(item + batch_size, len(images)))
                x = torch.from_numpy(np.ascontiguousarray(images[rows]))  # a copy: memmaps stay read-only
                if cuda:
                    x = x.pin_memory()
                while not stop.is_set():
                    try:
                        q.put((rows, x), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the consumer
            q.put(exc)
        q.put(None)

    t = threading.Thread(target=gather, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            rows, x = item
            yield rows, (x.to(device, non_blocking=True) if cuda else x)
    finally:
        stop.set()


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
    device: str = "cpu",
    precision: str = "auto",
) -> list[dict]:
    """Train ``model`` on uint8 NHWC ``images`` with integer ``labels``; checkpoint into out_dir.

    Returns the per-epoch history. ``identity`` names what the run trains on (payload or target
    hash, pack fingerprint, model settings); it is stored in every checkpoint, and resuming a
    checkpoint of another identity, config or image count is refused. ``device`` is a torch device
    (plada_edge.core.devices.resolve_device); on CUDA the model runs channels-last under autocast
    (``precision``: bf16 where supported, else fp16 with loss scaling). The model is back on the
    CPU when fit returns, ready for export.
    """
    import torch

    from .devices import autocast_dtype

    if len(images) != len(labels):
        raise TargetError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise TargetError("nothing to train on (0 images)")
    torch.set_num_threads(cfg.threads or native.hardware_threads())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = str(device).startswith("cuda")
    amp_dtype, scale_losses = autocast_dtype(str(device), precision)
    # on the device before the optimizer exists, so a resumed optimizer state lands there too
    model.to(device, memory_format=torch.channels_last if cuda else torch.preserve_format)
    view = view.to(device)
    steps_per_epoch = (len(images) + cfg.batch_size - 1) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    groups = param_groups(model, cfg.lr, cfg.backbone_lr)
    frozen = cfg.backbone_lr == 0  # a linear probe: the backbone runs in eval mode, without gradients
    for p in groups[1]["params"]:
        p.requires_grad_(not frozen)
    opt = torch.optim.AdamW(groups if not frozen else groups[:1], lr=cfg.lr, weight_decay=cfg.weight_decay)
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
    scaler = torch.amp.GradScaler("cuda", enabled=scale_losses)
    weights = None if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, np.float32)).to(device)
    y_all = torch.from_numpy(np.asarray(labels, np.int64)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=cfg.label_smoothing)
    shift = max(0, round(cfg.shift * view.m.shape[0] / 32)) if hasattr(view, "m") else cfg.shift
    if frozen:
        feats, head = frozen_features(model, view, images, cfg.hflip, cfg.batch_size, device)
        if eval_set is not None:  # the test split's features are fixed too: each epoch's check is one product
            eval_feats = frozen_features(model, view, eval_set[0], False, cfg.batch_size, device)[0][0]
            eval_labels = torch.from_numpy(np.asarray(eval_set[1], np.int64)).to(device)
    saved = time.monotonic()  # when the last checkpoint was written (or the run began)
    with bar("training", (cfg.epochs - start_epoch) * steps_per_epoch, progress, unit="step") as b:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, epoch])
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
            order = rng.permutation(len(images))
            plan = (np.sort(order[s * cfg.batch_size : (s + 1) * cfg.batch_size]) for s in range(steps_per_epoch))
            model.train(not frozen)
            seen = 0
            # running sums stay on the device: reading them back every step would stall a GPU
            correct = torch.zeros((), dtype=torch.int64, device=device)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            reported = 0
            steps = ((idx, None) for idx in plan) if frozen else batches(images, plan, cfg.batch_size, device)
            for s, (idx, raw) in enumerate(steps):
                rows = torch.from_numpy(idx).to(device)
                yb = y_all[rows]
                if frozen:  # the head alone, on cached features (flipped ones for a random half)
                    variant = torch.from_numpy(rng.integers(0, len(feats), len(idx))).to(device)
                    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                        out = head(feats[variant, rows])
                        loss = loss_fn(out.float(), yb)
                else:
                    if cfg.augment == "trivial":
                        raw = trivial_augment(raw, cfg.seed * 1_000_003 + epoch * 100_003 + s)
                    xb = _augment(view(raw), rng, shift, cfg.hflip)
                    if cuda:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
                        out = model(xb)
                        loss = loss_fn(out.float(), yb)
                loss = (loss * weights[rows]).sum() / weights[rows].sum() if weights is not None else loss.mean()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                seen += len(idx)
                correct += (out.argmax(1) == yb).sum()
                loss_sum += loss.detach().double() * len(idx)
                if not cuda or (s + 1) % 20 == 0 or s + 1 == steps_per_epoch:
                    b.advance(s + 1 - reported, epoch=epoch + 1, loss=float(loss_sum) / seen, acc=int(correct) / seen)
                    reported = s + 1
            mean_loss = float(loss_sum) / seen
            if not np.isfinite(mean_loss):
                model.to("cpu")
                raise ConfigError(f"training diverged at epoch {epoch + 1} (loss {mean_loss}); lower the learning rate")
            record = {
                "epoch": epoch + 1,
                "loss": mean_loss,
                "train_acc": int(correct) / seen,
                "seconds": time.perf_counter() - t0,
            }
            if eval_set is not None and frozen:
                with torch.no_grad():
                    record["test_acc"] = int((head(eval_feats).argmax(1) == eval_labels).sum()) / len(eval_labels)
            elif eval_set is not None:
                record["test_acc"] = accuracy(model, view, *eval_set, device=device)
            history.append(record)
            if epoch + 1 == cfg.epochs or time.monotonic() - saved >= CHECKPOINT_SECONDS:
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
                saved = time.monotonic()
    model.to("cpu", memory_format=torch.contiguous_format)
    view.to("cpu")
    return history
