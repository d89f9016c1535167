"""The device's half of PLADA (paper §3.3): payload → gathered subset → student → ONNX.

``learn``:
1. verifies the payload (checksum, version, and the pack fingerprint) before anything else;
2. decodes it and gathers the k named images from the pack into a file in the student folder, a
   block at a time, and trains from that file (memory flat in k; the pack is never loaded);
3. optionally adds free labels by FAISS label expansion (plada_edge.device.index);
4. trains the student through the payload's sensor view (the teacher's), with the paper's recipe:
   AdamW, lr 1e-3, cosine schedule, light augmentation, timed checkpoints, exact resume;
5. writes student.pt, student.onnx and metrics.json; with a target, evaluates on its test split
   beside the teacher's accuracy from the payload header.

student.onnx takes uint8 NHWC images at the task's native resolution (what the device's sensor
delivers) and contains the view; its metadata names the classes, input size and normalisation.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.config import StudentConfig, with_options
from ..core.devices import resolve_device
from ..core.errors import ModelError, PackError, TargetError
from ..core.locks import output_lock
from ..core.models import export_onnx_graph
from ..core.payload import Payload, read_payload
from ..core.recipes import student_options
from ..core.reference import ReferencePack
from ..core.results import Evaluation, StudentResult
from ..core.storage import ImageFile
from ..core.targets import Target, load_target
from ..core.train import TrainingRun, predict, save_model
from ..core.view import ViewSpec, as_nhwc3, torch_view
from .predictor import load_student, write_card

STUDENT_FILE, STUDENT_ONNX, METRICS_FILE = "student.pt", "student.onnx", "metrics.json"


def load_payload(
    payload,
    trusted: bytes | str | os.PathLike | None = None,
    token: str | None = None,
    task: str | None = None,
    allow_rollback: bool = False,
    trust_store: str | os.PathLike | None = None,
) -> Payload:
    """A Payload from a Payload, a file or a server URL (``token``: the server's bearer token).

    With ``trusted`` (the root public key, raw or a .pub file) the device's trust store (plada_edge.device.trust,
    at ``trust_store`` or its default place) admits it or refuses it in one line naming the rule: unsigned,
    untrusted, revoked or rotated-out key, a ``task`` other than the one asked for (a URL names its own),
    expired, or older than a release already accepted (unless ``allow_rollback``). A URL is also held to the
    server's signed index."""
    from ..core.keys import load_public_key
    from .trust import TrustStore

    if trusted is not None and not isinstance(trusted, bytes):
        trusted = load_public_key(trusted)
    store = TrustStore(trust_store) if trusted is not None else None
    text = str(payload) if not isinstance(payload, Payload) else ""
    if text.startswith(("http://", "https://")):
        from .fetch import fetch_payload, fetch_trusted

        if store is None:
            return fetch_payload(text, token=token)
        return fetch_trusted(text, trusted, store, token=token, allow_rollback=allow_rollback)
    p = payload if isinstance(payload, Payload) else read_payload(payload)
    if store is not None:
        store.admit(p, trusted, task=task, allow_rollback=allow_rollback)
    return p


def learn(
    payload,
    reference: ReferencePack | str | os.PathLike,
    out: str | os.PathLike,
    config: StudentConfig | None = None,
    *,
    target: Target | str | None = None,
    trusted: bytes | str | os.PathLike | None = None,
    token: str | None = None,
    task: str | None = None,
    allow_rollback: bool = False,
    trust_store: str | os.PathLike | None = None,
    recipe: str = "auto",
    resume: bool = True,
    progress: bool | None = None,
    **options,
) -> StudentResult:
    """Train a student from a payload; returns the metrics written to out/metrics.json.

    ``config`` (a StudentConfig) or flat keyword ``options`` (arch, weights, model_size, expand,
    and any TrainConfig field such as ``epochs``) set the student. ``model_size`` overrides the
    input resolution of the teacher's view (same sensor, colour and normalisation):
    ImageNet-initialised students such as efficientnet_lite0 want 64 px or more. With ``target``,
    the student is evaluated on its test split; a target of another class count is refused first.
    ``trusted`` (an Ed25519 public key, raw or a .pub file): refuse payloads that key (or a key it rotated to)
    did not sign, and hold them to the device's trust store: ``task`` (the name asked for), no rollback unless
    ``allow_rollback``, no expired release (``load_payload``; ``trust_store``: where the store lives).
    ``token``: the bearer token of a server that requires one (``payload`` a URL).
    Without a ``config``, ``recipe`` (auto | scratch | pretrained, plada_edge.core.recipes) fills
    every option left unset, from the payload's view (colour or grayscale) and installed weights.
    """
    t0 = time.perf_counter()
    trust = {"task": task, "allow_rollback": allow_rollback, "trust_store": trust_store}
    job = _Job.prepare(payload, reference, config, target, (trusted, token, trust), recipe, options)
    out = Path(out)
    with output_lock(out):  # one writer per student folder
        data = _training_data(job, out)
        model, history, data = _train(job, data, out, resume, progress)
        sha = save_model(out / STUDENT_FILE, model, **job.state())
        native_size = job.target.native_size if job.target is not None else job.spec.native_size
        parity = export_student(model, job.spec, out / STUDENT_ONNX, native_size, job.classes, sha)
        metrics = _metrics(job, data, history, parity, time.perf_counter() - t0)
        if job.target is not None:
            metrics.update(_evaluated(model, job))
        atomic.write_json(out / METRICS_FILE, metrics)
        _write_card(job, out, native_size, metrics)
        data.gathered.unlink(missing_ok=True)  # only a resumed run needs it
    return StudentResult(metrics)


@dataclass(frozen=True)
class _Job:
    """What ``learn`` works from once its inputs are checked: the verified payload, the pack, the config."""

    payload: Payload
    pack: ReferencePack
    cfg: StudentConfig
    recipe: str
    spec: ViewSpec
    target: Target | None
    run: TrainingRun

    @classmethod
    def prepare(cls, payload, reference, config, target, access, recipe, options) -> _Job:
        pack = reference if isinstance(reference, ReferencePack) else ReferencePack.open(reference)
        trusted, token, trust = access
        p = load_payload(payload, trusted, token, **trust)
        p.check_pack(pack)  # refuse before any work
        if config is None:
            options = student_options(bool((p.header.get("view") or {}).get("gray", False)), recipe, options)
            recipe = options.pop("recipe")
        else:
            recipe = "config"
        cfg = with_options(config, StudentConfig, options)
        tgt = load_target(target) if isinstance(target, (str, os.PathLike)) else target
        if tgt is not None:
            check_classes(tgt, p.header["class_names"], f"payload '{p.header['task']}'")
        view = p.header.get("view")  # a minimal payload has none: then the pack's images as they are
        size = p.header["image_size"]
        spec = ViewSpec.from_dict(view) if view else ViewSpec(native_size=size, model_size=size)
        if cfg.model_size is not None:
            spec = replace(spec, model_size=cfg.model_size)
        device = resolve_device(cfg.device)
        run = TrainingRun(cfg.arch, p.num_classes, cfg.weights, cfg.train, device, cfg.precision)
        return cls(p, pack, cfg, recipe, spec, tgt, run)

    @property
    def classes(self) -> list[str]:
        return self.payload.header["class_names"]

    def identity(self) -> dict:
        """What a resumed checkpoint must have been training on."""
        own = {k: v for k, v in asdict(self.cfg).items() if k not in ("train", "device", "precision")}
        return {"payload_sha256": self.payload.sha256, "pack_fingerprint": self.pack.fingerprint, **own}

    def state(self) -> dict:
        """student.pt's fields beside the weights."""
        return {
            "arch": self.cfg.arch,
            "num_classes": self.payload.num_classes,
            "class_names": self.classes,
            "view": self.spec.to_dict(),
            "payload_sha256": self.payload.sha256,
            "train": asdict(self.cfg.train),
        }


@dataclass
class _Data:
    """The student's training set: the payload's images (gathered once into the folder) and what was added."""

    images: np.ndarray
    labels: np.ndarray
    weight: np.ndarray | None
    gathered: Path
    expansion: dict | None = None
    self_training: dict | None = None
    soft: tuple[np.ndarray, np.ndarray] | None = None  # the payload's soft labels (runner-up, top share), padded

    def pad_soft(self, labels: np.ndarray) -> None:
        """Images added without soft labels (expansion, self-training) get their hard label as the target."""
        if self.soft is not None:
            self.soft = (np.concatenate([self.soft[0], labels]), np.concatenate([self.soft[1], np.ones(len(labels))]))


def _training_data(job: _Job, out: Path) -> _Data:
    """The payload's images and labels, with FAISS label expansion's neighbours when asked for."""
    p, pack, cfg = job.payload, job.pack, job.cfg
    images = gathered(pack, p, out)
    data = _Data(images, p.labels.copy(), None, images.path)
    if p.soft is not None:
        data.soft = (p.soft.runner_up, p.soft.confidence.astype(np.float32))
    if cfg.expand > 0:
        from .index import expand_labels

        extra_idx, extra_lab, data.expansion = expand_labels(
            pack, p.indices, p.labels, k=cfg.expand, embedder=cfg.embedder
        )
        if len(extra_idx):
            data.images = np.concatenate([images, pack.gather(extra_idx)])
            data.labels = np.concatenate([data.labels, extra_lab])
            data.pad_soft(extra_lab)
            data.weight = np.concatenate([np.ones(p.k), np.full(len(extra_idx), cfg.expand_weight)]).astype(np.float32)
    return data


def _train(job: _Job, data: _Data, out: Path, resume: bool, progress):
    """Fit the student; with self-training, a second run from a fresh start on payload + self-labelled images."""
    view = torch_view(job.spec, input_size=job.pack.size)
    fit_on = {"resume": resume, "progress": progress, "soft": data.soft}
    model, history = job.run.fit(
        view, data.images, data.labels, out, job.identity(), sample_weight=data.weight, **fit_on
    )
    cfg = job.cfg
    if cfg.self_train <= 0:
        return model, history, data
    p, run = job.payload, job.run
    confident = cfg.self_train, cfg.self_train_confidence, cfg.train.seed
    extra_idx, extra_lab, data.self_training = self_label(
        model, view, job.pack, p.indices, p.num_classes, *confident, run.device
    )
    if not len(extra_idx):
        return model, history, data
    base = data.weight if data.weight is not None else np.ones(len(data.labels), np.float32)
    images = np.concatenate([data.images, job.pack.gather(extra_idx)])
    labels = np.concatenate([data.labels, extra_lab])
    weight = np.concatenate([base, np.full(len(extra_idx), cfg.expand_weight, np.float32)])
    identity = {**job.identity(), "self_trained": extra_idx[:64].tolist(), "extra": int(len(extra_idx))}
    data.pad_soft(extra_lab)
    fit_on["soft"] = data.soft
    model, history = run.fit(view, images, labels, out / "self-train", identity, sample_weight=weight, **fit_on)
    data.labels = labels
    return model, history, data


def _metrics(job: _Job, data: _Data, history: list, parity: float, seconds: float) -> dict:
    p = job.payload
    return {
        "task": p.header["task"],
        "arch": job.cfg.arch,
        "recipe": job.recipe,
        "weights": job.cfg.weights,
        "epochs": job.cfg.train.epochs,
        "model_size": job.spec.model_size,
        "payload_bytes": p.total_bytes,
        "k": p.k,
        "payload_sha256": p.sha256,
        "payload_signed_by": p.signer_id,
        "pack_fingerprint": job.pack.fingerprint,
        "trained_on": int(len(data.labels)),
        "expansion": data.expansion,
        "self_training": data.self_training,
        "history": history,
        "onnx_max_abs_diff": parity,
        "teacher_test_acc": p.header.get("teacher", {}).get("test_acc"),
        "seconds": seconds,
        "device": job.run.device,
    }


def _evaluated(model, job: _Job) -> dict:
    """The student's accuracy on the target's test split, seen as the device will see it."""
    tgt, teacher_acc = job.target, job.payload.header.get("teacher", {}).get("test_acc")
    view = torch_view(job.spec, input_size=tgt.native_size)
    pred = predict(model, view, as_nhwc3(tgt.x_test), device=job.run.device).argmax(1)
    model.to("cpu")
    acc = float((pred == tgt.y_test).mean())
    per_class = [float((pred[tgt.y_test == c] == c).mean()) for c in range(tgt.num_classes) if (tgt.y_test == c).any()]
    return {
        "target": tgt.name,
        "test_acc": acc,
        "macro_acc": float(np.mean(per_class)),
        "ratio_to_teacher": (acc / teacher_acc) if teacher_acc else None,
    }


def _write_card(job: _Job, out: Path, native_size: int, metrics: dict) -> None:
    p = job.payload
    write_card(
        out,
        out / STUDENT_ONNX,
        native_size,
        job.classes,
        job.spec.to_dict(),
        p.header,
        payload={"sha256": p.sha256, "k": p.k, "bytes": p.total_bytes, "signed_by": p.signer_id},
        recipe={
            "recipe": job.recipe,
            "arch": job.cfg.arch,
            "weights": job.cfg.weights,
            "epochs": job.cfg.train.epochs,
            "model_size": job.spec.model_size,
            "trained_on": metrics["trained_on"],
        },
        accuracy={k: metrics.get(k) for k in ("target", "test_acc", "macro_acc", "teacher_test_acc")},
    )


def check_classes(target: Target, classes: list[str], what: str) -> None:
    """Refuse to score ``what`` on a target whose classes cannot be the same: another count, or the same
    names in another order (an accuracy over permuted labels would be a plausible wrong number). Other
    names in the same count (an imported teacher's own) are scored with a warning."""
    if target.num_classes != len(classes):
        raise TargetError(f"target {target.name} has {target.num_classes} classes but {what} has {len(classes)}")
    mine, theirs = list(target.class_names), list(classes)
    if mine == theirs:
        return
    if sorted(mine) == sorted(theirs):
        diff = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
        raise TargetError(
            f"target {target.name}'s classes differ from {what}'s in order (class {diff}: {mine[diff]!r} vs "
            f"{theirs[diff]!r}); evaluate on the target the task was made from"
        )
    warnings.warn(
        f"target {target.name}'s class names differ from {what}'s ({mine[:3]} vs {theirs[:3]}); "
        "scoring them as the same classes in the same order",
        stacklevel=3,
    )


GATHERED = "gathered-{}.npy"  # the payload's images, gathered once into the student folder


def gathered(pack: ReferencePack, payload, out: Path) -> ImageFile:
    """The payload's images as a file in ``out`` (gathered in blocks, so memory stays flat at any k),
    read through ImageFile. A rerun (resume) reuses it; it is named by payload and pack, so a
    file from another payload or pack is never read."""
    path = out / GATHERED.format(hashlib.sha256((payload.sha256 + pack.fingerprint).encode()).hexdigest()[:16])
    if path.is_file():
        try:
            images = ImageFile(path)
            if images.shape == (payload.k, pack.size, pack.size, 3):
                return images
        except PackError:
            pass  # damaged: gather again
    for old in out.glob(GATHERED.format("*")):
        old.unlink()
    return pack.gather_to(payload.indices, path)


def self_label(
    model, view, pack: ReferencePack, owned, num_classes: int, share: float, confidence: float, seed: int, device
):
    """Zero-byte self-training: the student labels pool images it is sure of (paper §3.3 extension).

    From a seeded sample of 20 x share x k pool images outside the payload, keep those whose
    softmax confidence reaches ``confidence``, the most confident first, at most share x k / C
    per class so no class swamps the rest. Returns (indices, labels, report).
    """
    k = len(owned)
    budget = int(round(share * k))
    rng = np.random.default_rng([seed, 7])
    free = np.setdiff1d(np.arange(pack.n), np.asarray(owned, np.int64))
    cand = np.sort(rng.choice(free, min(len(free), 20 * max(budget, 1)), replace=False))
    logits = predict(model, view, pack.gather(cand), device=device)
    z = logits - logits.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    conf, pred = prob.max(1), prob.argmax(1)
    per_class = max(1, budget // num_classes)
    keep = []
    for c in range(num_classes):
        mine = np.flatnonzero((pred == c) & (conf >= confidence))
        keep.append(mine[np.argsort(-conf[mine], kind="stable")][:per_class])
    keep = np.sort(np.concatenate(keep))
    report = {
        "candidates": int(len(cand)),
        "confident": int((conf >= confidence).sum()),
        "added": int(len(keep)),
        "confidence": confidence,
        "per_class": np.bincount(pred[keep], minlength=num_classes).tolist(),
    }
    return cand[keep], pred[keep].astype(np.int64), report


def export_student(
    model,
    spec: ViewSpec,
    path: Path,
    input_size: int,
    class_names: list[str],
    checkpoint_sha256: str,
    tolerance: float = 1e-4,
) -> float:
    """student.onnx: uint8 NHWC at ``input_size`` in, logits out; returns max |diff| vs torch."""
    import onnx
    import onnxruntime as ort
    import torch

    view = torch_view(spec, input_size=input_size)

    class ImagesToLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.view, self.model = view, model

        def forward(self, images):
            return self.model(self.view(images))

    wrapped = ImagesToLogits().eval()
    proto = export_onnx_graph(wrapped, input_size, ["logits"])
    for k, v in {
        "plada.format": "plada-student-v1",
        "plada.class_names": json.dumps(class_names),
        "plada.input_size": str(input_size),
        "plada.view": json.dumps(spec.to_dict()),
        "plada.checkpoint_sha256": checkpoint_sha256,
    }.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    x = np.random.default_rng(0).integers(0, 256, (16, input_size, input_size, 3), dtype=np.uint8)
    with torch.inference_mode():
        want = wrapped(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["logits"], {"images": x})[0]
    diff = float(np.abs(got - want).max())
    if not diff <= tolerance:
        raise ModelError(f"student ONNX export disagrees with torch: max |logit diff| {diff:.3g} > {tolerance:g}")
    atomic.write_bytes(path, data)
    return diff


def evaluate(
    student: str | os.PathLike,
    target: Target | str,
    batch_size: int = 512,
    device: str = "auto",
    providers: str | list[str] | None = None,
) -> Evaluation:
    """Accuracy of student.onnx (via onnxruntime, on the best provider for ``device``) on the target's test split.

    The student is opened as ``predict`` opens it (plada_edge.device.predictor.load_student), so
    both give the same predictions for the same images.
    """
    tgt = load_target(target) if isinstance(target, (str, os.PathLike)) else target
    model = load_student(student, device, providers)
    if model.input_size != tgt.native_size:
        raise TargetError(f"student takes {model.input_size} px images but target {tgt.name} is {tgt.native_size} px")
    check_classes(tgt, model.classes, f"student {model.path.parent.name}")
    pred = model.logits(as_nhwc3(tgt.x_test), batch_size).argmax(1)
    path = model.path
    per_class = [
        float((pred[tgt.y_test == c] == c).mean()) if (tgt.y_test == c).any() else None for c in range(tgt.num_classes)
    ]
    valid = [a for a in per_class if a is not None]
    return Evaluation(
        {
            "student": str(path),
            "target": tgt.name,
            "test_acc": float((pred == tgt.y_test).mean()),
            "macro_acc": float(np.mean(valid)) if valid else None,
            "per_class": per_class,
            "n": int(len(pred)),
        }
    )


__all__ = ["learn", "evaluate", "export_student", "predict"]
