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
import io
import json
import os
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.config import StudentConfig, with_options
from ..core.devices import resolve_device
from ..core.errors import ModelError, PackError, TargetError
from ..core.locks import output_lock
from ..core.models import create_model, export_onnx_graph
from ..core.payload import Payload, read_payload
from ..core.recipes import student_options
from ..core.reference import ReferencePack
from ..core.results import Evaluation, StudentResult
from ..core.storage import ImageFile
from ..core.targets import Target, load_target
from ..core.train import fit, predict
from ..core.view import ViewSpec, as_nhwc3, torch_view
from .predictor import load_student, write_card

STUDENT_FILE, STUDENT_ONNX, METRICS_FILE = "student.pt", "student.onnx", "metrics.json"


def load_payload(payload, trusted: bytes | str | os.PathLike | None = None, token: str | None = None) -> Payload:
    """A Payload from a Payload, a file or a server URL (``token``: the server's bearer token); with
    ``trusted`` (a public key or its .pub file), refused unless that key signed it."""
    from ..core.keys import load_public_key, require_trusted

    if trusted is not None and not isinstance(trusted, bytes):
        trusted = load_public_key(trusted)
    if isinstance(payload, Payload):
        require_trusted(payload.signer, trusted)
        return payload
    text = str(payload)
    if text.startswith(("http://", "https://")):
        from .fetch import fetch_payload

        return fetch_payload(text, token=token, trusted=trusted)
    return read_payload(payload, trusted)


def learn(
    payload,
    reference: ReferencePack | str | os.PathLike,
    out: str | os.PathLike,
    config: StudentConfig | None = None,
    *,
    target: Target | str | None = None,
    trusted: bytes | str | os.PathLike | None = None,
    token: str | None = None,
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
    ``trusted`` (an Ed25519 public key, raw or a .pub file): refuse payloads that key did not sign.
    ``token``: the bearer token of a server that requires one (``payload`` a URL).
    Without a ``config``, ``recipe`` (auto | scratch | pretrained, plada_edge.core.recipes) fills
    every option left unset, from the payload's view (colour or grayscale) and installed weights.
    """
    import torch

    t0 = time.perf_counter()
    pack = reference if isinstance(reference, ReferencePack) else ReferencePack.open(reference)
    p = load_payload(payload, trusted, token)
    p.check_pack(pack)  # refuse before any work
    if config is None:
        options = student_options(bool((p.header.get("view") or {}).get("gray", False)), recipe, options)
        recipe = options.pop("recipe")
    else:
        recipe = "config"
    cfg = with_options(config, StudentConfig, options)
    c = p.num_classes
    tgt = load_target(target) if isinstance(target, (str, os.PathLike)) else target
    if tgt is not None:
        check_classes(tgt, p.header["class_names"], f"payload '{p.header['task']}'")
    view = p.header.get("view")  # a minimal payload has none: then the pack's images as they are
    size = p.header["image_size"]
    spec = ViewSpec.from_dict(view) if view else ViewSpec(native_size=size, model_size=size)
    if cfg.model_size is not None:
        spec = replace(spec, model_size=cfg.model_size)
    labels = p.labels.copy()
    sample_weight = None
    expansion = None
    out = Path(out)
    torch.manual_seed(cfg.train.seed)
    arch = cfg.arch
    model = create_model(arch, c, cfg.weights)
    eval_view = torch_view(spec, input_size=tgt.native_size) if tgt is not None else None
    identity = {
        "payload_sha256": p.sha256,
        "pack_fingerprint": pack.fingerprint,
        **{k: v for k, v in asdict(cfg).items() if k not in ("train", "device", "precision")},
    }
    device = resolve_device(cfg.device)
    with output_lock(out):  # one writer per student folder
        images = gathered(pack, p, out)
        gathered_file = images.path
        if cfg.expand > 0:
            from .index import expand_labels

            extra_idx, extra_lab, expansion = expand_labels(
                pack, p.indices, p.labels, k=cfg.expand, embedder=cfg.embedder
            )
            if len(extra_idx):
                images = np.concatenate([images, pack.gather(extra_idx)])
                labels = np.concatenate([labels, extra_lab])
                sample_weight = np.concatenate([np.ones(p.k), np.full(len(extra_idx), cfg.expand_weight)]).astype(
                    np.float32
                )
        train_view = torch_view(spec, input_size=pack.size)
        history = fit(
            model,
            train_view,
            images,
            labels,
            cfg.train,
            out,
            sample_weight=sample_weight,
            resume=resume,
            progress=progress,
            identity=identity,
            device=device,
            precision=cfg.precision,
        )
        self_training = None
        if cfg.self_train > 0:
            extra_idx, extra_lab, self_training = self_label(
                model, train_view, pack, p.indices, c, cfg.self_train, cfg.self_train_confidence, cfg.train.seed, device
            )
            if len(extra_idx):  # a second round from a fresh start on payload + self-labelled images
                torch.manual_seed(cfg.train.seed)
                model = create_model(arch, c, cfg.weights)
                base = sample_weight if sample_weight is not None else np.ones(len(labels), np.float32)
                weight = np.concatenate([base, np.full(len(extra_idx), cfg.expand_weight, np.float32)])
                history = fit(
                    model,
                    train_view,
                    np.concatenate([images, pack.gather(extra_idx)]),
                    np.concatenate([labels, extra_lab]),
                    cfg.train,
                    out / "self-train",
                    sample_weight=weight,
                    resume=resume,
                    progress=progress,
                    identity={**identity, "self_trained": extra_idx[:64].tolist(), "extra": int(len(extra_idx))},
                    device=device,
                    precision=cfg.precision,
                )
                labels = np.concatenate([labels, extra_lab])
        state = {
            "arch": arch,
            "num_classes": c,
            "class_names": p.header["class_names"],
            "view": spec.to_dict(),
            "payload_sha256": p.sha256,
            "train": asdict(cfg.train),
            "model": model.state_dict(),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic.write_bytes(out / STUDENT_FILE, buf.getvalue())
        native_size = tgt.native_size if tgt is not None else spec.native_size
        parity = export_student(
            model,
            spec,
            out / STUDENT_ONNX,
            native_size,
            p.header["class_names"],
            hashlib.sha256(buf.getvalue()).hexdigest(),
        )
        teacher_acc = p.header.get("teacher", {}).get("test_acc")
        metrics = {
            "task": p.header["task"],
            "arch": arch,
            "recipe": recipe,
            "weights": cfg.weights,
            "epochs": cfg.train.epochs,
            "model_size": spec.model_size,
            "payload_bytes": p.total_bytes,
            "k": p.k,
            "payload_sha256": p.sha256,
            "payload_signed_by": p.signer_id,
            "pack_fingerprint": pack.fingerprint,
            "trained_on": int(len(labels)),
            "expansion": expansion,
            "self_training": self_training,
            "history": history,
            "onnx_max_abs_diff": parity,
            "teacher_test_acc": teacher_acc,
            "seconds": time.perf_counter() - t0,
            "device": device,
        }
        if tgt is not None:
            pred = predict(model, eval_view, as_nhwc3(tgt.x_test), device=device).argmax(1)
            model.to("cpu")
            acc = float((pred == tgt.y_test).mean())
            per_class = [
                float((pred[tgt.y_test == c] == c).mean()) for c in range(tgt.num_classes) if (tgt.y_test == c).any()
            ]
            metrics.update(
                target=tgt.name,
                test_acc=acc,
                macro_acc=float(np.mean(per_class)),
                ratio_to_teacher=(acc / teacher_acc) if teacher_acc else None,
            )
        atomic.write_json(out / METRICS_FILE, metrics)
        write_card(
            out,
            out / STUDENT_ONNX,
            native_size,
            p.header["class_names"],
            spec.to_dict(),
            p.header,
            payload={"sha256": p.sha256, "k": p.k, "bytes": p.total_bytes, "signed_by": p.signer_id},
            recipe={
                "recipe": recipe,
                "arch": arch,
                "weights": cfg.weights,
                "epochs": cfg.train.epochs,
                "model_size": spec.model_size,
                "trained_on": int(len(labels)),
            },  # fmt: skip
            accuracy={k: metrics.get(k) for k in ("target", "test_acc", "macro_acc", "teacher_test_acc")},
        )
        gathered_file.unlink(missing_ok=True)  # only a resumed run needs it
    return StudentResult(metrics)


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
