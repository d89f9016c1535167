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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import atomic, native
from .config import CHECKPOINT_SECONDS, PROBE_BATCH_GPU, RESIDENT_GPU_SHARE, TrainConfig
from .errors import ConfigError, ModelError, TargetError
from .progress import bar

CHECKPOINT = "checkpoint.pt"


def _augment(x, pad: int, dx, dy, flip):
    """Shift each image by (dx - pad, dy - pad) in a replicate-padded frame; mirror those with ``flip``.

    The draws are device tensors cut from the epoch's plan (EpochPlan), so a step uploads nothing
    and never waits for the GPU; ``dx``/``dy`` are None without shifts, ``flip`` None without flips.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    if dx is not None:
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        dev = x.device
        # one gather for the whole batch (a per-image loop costs a kernel launch per image on a GPU)
        rows = dy[:, None] + torch.arange(h, device=dev)
        cols = dx[:, None] + torch.arange(w, device=dev)
        n_idx = torch.arange(n, device=dev)[:, None, None, None]
        c_idx = torch.arange(c, device=dev)[None, :, None, None]
        x = padded[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]
    if flip is not None:
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


@dataclass
class EpochPlan:
    """One epoch's batches and random draws, made up front on the host and uploaded to the device once.

    They are drawn from the epoch's generator in the order a per-step loop would draw them (the
    shuffle, then per step: shifts and flips, or the probe's feature variants), so the plan changes
    no result; what it removes is a small upload, and with it a wait for the GPU, at every step.
    """

    host_rows: list  # per step, its sorted rows (the host-side gather reads them)
    offsets: list  # step s covers [offsets[s], offsets[s + 1]) of the flat tensors below
    rows: object  # torch tensors on the device; None where the epoch draws none
    dx: object = None
    dy: object = None
    flip: object = None
    variant: object = None

    def step(self, s: int) -> dict:
        a, b = self.offsets[s], self.offsets[s + 1]
        cut = {k: getattr(self, k) for k in ("rows", "dx", "dy", "flip", "variant")}
        return {k: (None if v is None else v[a:b]) for k, v in cut.items()}


def plan_epoch(n: int, batch_size: int, rng: np.random.Generator, shift: int, hflip: bool, variants: int, device):
    """The EpochPlan for ``n`` images; ``variants`` > 0 draws the probe's feature variants instead of shifts."""
    import torch

    order = rng.permutation(n)
    host_rows, draws = [], {"dx": [], "dy": [], "flip": [], "variant": []}
    for s in range(0, n, batch_size):
        idx = np.sort(order[s : s + batch_size])
        host_rows.append(idx)
        if variants:
            draws["variant"].append(rng.integers(0, variants, len(idx)))
            continue
        if shift > 0:
            draws["dx"].append(rng.integers(0, 2 * shift + 1, len(idx)))
            draws["dy"].append(rng.integers(0, 2 * shift + 1, len(idx)))
        if hflip:
            draws["flip"].append(rng.random(len(idx)) < 0.5)

    def upload(parts):
        return torch.from_numpy(np.concatenate(parts)).to(device) if parts else None

    offsets = np.cumsum([0, *map(len, host_rows)]).tolist()
    return EpochPlan(host_rows, offsets, upload(host_rows), **{k: upload(v) for k, v in draws.items()})


def resident_images(images: np.ndarray, device: str):
    """The uint8 images uploaded once to a CUDA ``device`` when they fit RESIDENT_GPU_SHARE of its free memory.

    None elsewhere: the host then gathers each batch (``batches``). The upload goes in 64 MiB
    blocks, so a memory-mapped subset is never copied whole on the host.
    """
    if not str(device).startswith("cuda"):
        return None
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    if images.nbytes > RESIDENT_GPU_SHARE * free:
        return None
    out = torch.empty(images.shape, dtype=torch.uint8, device=device)
    block = max(1, (64 << 20) // max(1, images[:1].nbytes))
    for a in range(0, len(images), block):
        out[a : a + block].copy_(torch.from_numpy(np.ascontiguousarray(images[a : a + block])))
    return out


def _epoch_batches(images: np.ndarray, resident, plan: EpochPlan, batch_size: int, device: str):
    """Each step's uint8 NHWC batch on the device: cut from the resident copy, or gathered on the host."""
    if resident is not None:
        return (resident.index_select(0, plan.step(s)["rows"]) for s in range(len(plan.host_rows)))
    return (x for _, x in batches(images, iter(plan.host_rows), batch_size, device))


def _schedule(model, cfg: TrainConfig, n: int):
    """AdamW over the trainable groups and the warm-up + cosine schedule; (optimizer, scheduler, frozen)."""
    import torch

    total = (n + cfg.batch_size - 1) // cfg.batch_size * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    groups = param_groups(model, cfg.lr, cfg.backbone_lr)
    frozen = cfg.backbone_lr == 0  # a linear probe: the backbone runs in eval mode, without gradients
    for p in groups[1]["params"]:
        p.requires_grad_(not frozen)
    opt = torch.optim.AdamW(groups if not frozen else groups[:1], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total - warm)))
    )
    return opt, sched, frozen


def _run_state(cfg: TrainConfig, n: int, identity: dict | None) -> dict:
    """What a checkpoint must share with this run to be resumed by it."""
    return {"config": asdict(cfg), "n": n, "identity": identity}


def _resume(ckpt: Path, mine: dict, model, opt, sched) -> tuple[list, int]:
    """Load ``ckpt`` into model, optimizer and schedule; (history, epochs done). Another run's is refused."""
    state = load_checkpoint(ckpt)
    theirs = {key: state.get(key) for key in mine}
    if theirs != mine:
        differ = ", ".join(key for key in mine if theirs[key] != mine[key])
        raise ConfigError(
            f"{ckpt} belongs to another run (its {differ} differ); pass --fresh to start over, or choose another --out"
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return state["history"], state["epoch"]


class _Probe:
    """The frozen-backbone mode (a linear probe): features computed once (frozen_features), the head alone trained."""

    def __init__(self, model, view, images, eval_set, cfg: TrainConfig, device: str):
        import torch

        batch = PROBE_BATCH_GPU if str(device).startswith("cuda") else cfg.batch_size
        self.feats, self.head = frozen_features(model, view, images, cfg.hflip, batch, device)
        self.eval = None
        if eval_set is not None:  # the test split's features are fixed too: each epoch's check is one product
            eval_feats = frozen_features(model, view, eval_set[0], False, batch, device)[0][0]
            self.eval = (eval_feats, torch.from_numpy(np.asarray(eval_set[1], np.int64)).to(device))

    def test_acc(self) -> float:
        import torch

        with torch.no_grad():
            return int((self.head(self.eval[0]).argmax(1) == self.eval[1]).sum()) / len(self.eval[1])


@dataclass(frozen=True)
class TrainingRun:
    """One model trained from scratch or its initial weights: what teachers, students and the student's
    self-training round all do, and the only place a model is created for training."""

    arch: str
    num_classes: int
    weights: str | None
    train: TrainConfig
    device: str = "cpu"
    precision: str = "auto"

    def fit(self, view, images, labels, out_dir, identity: dict, *, resume=True, progress=None, **fit_options):
        """A fresh model (seeded by the run's TrainConfig), fitted: (model on the CPU, per-epoch history)."""
        import torch

        from .models import create_model

        torch.manual_seed(self.train.seed)
        model = create_model(self.arch, self.num_classes, self.weights)
        history = fit(
            model,
            view,
            images,
            labels,
            self.train,
            out_dir,
            resume=resume,
            progress=progress,
            identity=identity,
            device=self.device,
            precision=self.precision,
            **fit_options,
        )
        return model, history


def save_model(path: Path, model, **fields) -> str:
    """Write ``fields`` and the model's weights as one torch file, atomically; its SHA-256 (what exports cite)."""
    import hashlib

    import torch

    buf = io.BytesIO()
    torch.save({**fields, "model": model.state_dict()}, buf)
    atomic.write_bytes(path, buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


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
    soft: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict]:
    """Train ``model`` on uint8 NHWC ``images`` with integer ``labels``; checkpoint into out_dir.

    Returns the per-epoch history. ``identity`` names what the run trains on (payload or target
    hash, pack fingerprint, model settings); it is stored in every checkpoint, and resuming a
    checkpoint of another identity, config or image count is refused. ``device`` is a torch device
    (plada_edge.core.devices.resolve_device); on CUDA the model runs channels-last under autocast
    (``precision``: bf16 where supported, else fp16 with loss scaling) with cuDNN autotuning, and
    the images stay on the GPU when they fit (resident_images). The model is back on the CPU when
    fit returns, ready for export. ``soft`` (runner-up class, top-1 share per image): soft labels, mixed into
    the loss at ``cfg.soft_mix``.
    """
    import torch

    if len(images) != len(labels):
        raise TargetError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise TargetError("nothing to train on (0 images)")
    torch.set_num_threads(cfg.threads or native.hardware_threads())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = str(device).startswith("cuda")
    # on the device before the optimizer exists, so a resumed optimizer state lands there too
    model.to(device, memory_format=torch.channels_last if cuda else torch.preserve_format)
    view = view.to(device)
    opt, sched, frozen = _schedule(model, cfg, len(images))
    ckpt, mine = out_dir / CHECKPOINT, _run_state(cfg, len(images), identity)
    history, start_epoch = _resume(ckpt, mine, model, opt, sched) if resume and ckpt.exists() else ([], 0)
    loop = _Loop(model, view, labels, sample_weight, cfg, device, precision, soft)
    probe = _Probe(model, view, images, eval_set, cfg, device) if frozen else None
    resident = None if frozen else resident_images(images, device)
    steps_per_epoch = (len(images) + cfg.batch_size - 1) // cfg.batch_size
    saved = time.monotonic()  # when the last checkpoint was written (or the run began)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark or cuda  # fixed shapes: autotuned convolutions pay back
    try:
        with bar("training", (cfg.epochs - start_epoch) * steps_per_epoch, progress, unit="step") as b:
            for epoch in range(start_epoch, cfg.epochs):
                record = loop.epoch(epoch, images, resident, probe, opt, sched, b)
                if eval_set is not None:
                    record["test_acc"] = probe.test_acc() if probe else accuracy(model, view, *eval_set, device=device)
                history.append(record)
                if epoch + 1 == cfg.epochs or time.monotonic() - saved >= CHECKPOINT_SECONDS:
                    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
                    state |= {"scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history, **mine}
                    save_checkpoint(ckpt, state)
                    saved = time.monotonic()
    finally:
        torch.backends.cudnn.benchmark = benchmark
        model.to("cpu", memory_format=torch.contiguous_format)
        view.to("cpu")
    return history


class _Loop:
    """One epoch of steps: forward, weighted loss, backward, optimizer and schedule, running sums."""

    def __init__(self, model, view, labels, sample_weight, cfg: TrainConfig, device: str, precision: str, soft=None):
        import torch

        from .devices import autocast_dtype

        self.model, self.view, self.cfg, self.device = model, view, cfg, device
        self.cuda = str(device).startswith("cuda")
        self.amp_dtype, scale_losses = autocast_dtype(str(device), precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=scale_losses)
        self.weights = None
        if sample_weight is not None:
            self.weights = torch.from_numpy(np.asarray(sample_weight, np.float32)).to(device)
        self.labels = torch.from_numpy(np.asarray(labels, np.int64)).to(device)
        self.loss_fn = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=cfg.label_smoothing)
        self.soft = None
        if soft is not None and cfg.soft_mix > 0:
            runner, share = soft
            self.soft = (
                torch.from_numpy(np.asarray(runner, np.int64)).to(device),
                torch.from_numpy(np.asarray(share, np.float32)).to(device),
            )
        self.shift = max(0, round(cfg.shift * view.m.shape[0] / 32)) if hasattr(view, "m") else cfg.shift

    def _forward(self, s: int, epoch: int, step: dict, raw, probe):
        import torch

        cfg = self.cfg
        if probe is not None:  # the head alone, on cached features (flipped ones for a random half)
            inputs, net = probe.feats[step["variant"], step["rows"]], probe.head
        else:
            if cfg.augment == "trivial":
                raw = trivial_augment(raw, cfg.seed * 1_000_003 + epoch * 100_003 + s)
            inputs, net = _augment(self.view(raw), self.shift, step["dx"], step["dy"], step["flip"]), self.model
            if self.cuda:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = net(inputs)
            loss = self.loss_fn(out.float(), self.labels[step["rows"]])
            return out, loss if self.soft is None else self._mixed(out.float(), loss, step["rows"])

    def _mixed(self, out, hard, rows):
        """(1 - soft_mix) x the hard label's loss + soft_mix x the cross-entropy against the soft target (the top
        share on the label, the rest on the runner-up)."""
        import torch

        logp = torch.log_softmax(out, 1)
        runner, share = self.soft[0][rows], self.soft[1][rows]
        label = self.labels[rows]
        soft = -(share * logp.gather(1, label[:, None])[:, 0] + (1 - share) * logp.gather(1, runner[:, None])[:, 0])
        return (1 - self.cfg.soft_mix) * hard + self.cfg.soft_mix * soft

    def epoch(self, epoch: int, images, resident, probe, opt, sched, b) -> dict:
        import torch

        cfg, t0 = self.cfg, time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        variants = len(probe.feats) if probe is not None else 0
        plan = plan_epoch(len(images), cfg.batch_size, rng, self.shift, cfg.hflip, variants, self.device)
        self.model.train(probe is None)
        n_steps, seen, reported = len(plan.host_rows), 0, 0
        # running sums stay on the device: reading them back every step would stall a GPU
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        raws = _epoch_batches(images, resident, plan, cfg.batch_size, self.device) if probe is None else None
        for s in range(n_steps):
            step = plan.step(s)
            out, loss = self._forward(s, epoch, step, None if raws is None else next(raws), probe)
            if self.weights is not None:
                w = self.weights[step["rows"]]
                loss = (loss * w).sum() / w.sum()
            else:
                loss = loss.mean()
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
            sched.step()
            seen += len(plan.host_rows[s])
            correct += (out.argmax(1) == self.labels[step["rows"]]).sum()
            loss_sum += loss.detach().double() * len(plan.host_rows[s])
            if not self.cuda or (s + 1) % 20 == 0 or s + 1 == n_steps:
                b.advance(s + 1 - reported, epoch=epoch + 1, loss=float(loss_sum) / seen, acc=int(correct) / seen)
                reported = s + 1
        mean_loss = float(loss_sum) / seen
        if not np.isfinite(mean_loss):
            raise ConfigError(f"training diverged at epoch {epoch + 1} (loss {mean_loss}); lower the learning rate")
        seconds = time.perf_counter() - t0
        return {"epoch": epoch + 1, "loss": mean_loss, "train_acc": int(correct) / seen, "seconds": seconds}
