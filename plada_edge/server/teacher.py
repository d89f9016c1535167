"""Server step 1-2 (paper §3): train a teacher on the target task and export it to ONNX.

The exported graph takes uint8 NHWC images exactly as a reference pack stores them; the sensor
view (plada_edge.core.view: colour, area-downsample to the task's native size, resize, normalise)
and the model run inside it, so any server with onnxruntime scores exactly what training saw.
Outputs: ``logits``, (optionally) ``features``, the pooled input of the last linear layer, and
``distance`` when the teacher holds anchors: the pooled features of up to NEAREST_ANCHORS of its own
training images, kept at training time. An image's distance is 1 - the mean cosine similarity of
its NEAREST_K most similar anchors: how far it lies from the target's own images as the teacher
sees them (strategy ``nearest``, plada_edge.server.selection; ours, not the paper's).

Beside it, the **blind teachers**: the same recipe trained without the target's held-out images, one per
held-out fold (Target.holdout_folds), kept in ``TEACHER/blind`` (fold 0), ``TEACHER/blind-1``, ... and
exported to ``NAME.blind.onnx``, ``NAME.blind-1.onnx``, ... The forecast (plada_edge.server.forecast) lets
each select and label a trial payload, so its fold's held-out images judge a student that learned nothing
from them, as the device's student learned nothing from the test split.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.config import NEAREST_ANCHORS, NEAREST_K, TeacherConfig, with_options
from ..core.devices import resolve_device
from ..core.errors import ModelError
from ..core.locks import output_lock
from ..core.models import create_model, export_onnx_graph, feature_hook
from ..core.recipes import TargetFacts, is_pretrained, teacher_options
from ..core.results import ExportResult, TeacherResult
from ..core.targets import Target, load_target
from ..core.train import TrainingRun, accuracy, load_checkpoint, predict, save_model
from ..core.view import ViewSpec, as_nhwc3, torch_view

TEACHER_FILE, METRICS_FILE = "teacher.pt", "metrics.json"


def blind_name(fold: int = 0) -> str:
    """The blind teacher of held-out fold ``fold``: its folder inside a teacher's, and its graph's infix."""
    return "blind" if fold == 0 else f"blind-{fold}"


def blind_path(onnx_path: str | os.PathLike, fold: int = 0) -> Path:
    """Where a teacher exported to ``onnx_path`` keeps its blind twin's graph for ``fold``: NAME.blind.onnx
    (fold 0), NAME.blind-1.onnx, ... beside it."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{blind_name(fold)}.onnx")


def train_teacher(
    target: Target | str,
    out: str | os.PathLike,
    config: TeacherConfig | None = None,
    *,
    recipe: str = "auto",
    resume: bool = True,
    progress: bool | None = None,
    **options,
) -> TeacherResult:
    """Train a teacher on the target's train split; write teacher.pt and metrics.json into ``out``.

    ``config`` (a TeacherConfig) or flat keyword ``options`` (arch, size, weights and any
    TrainConfig field, e.g. ``epochs=5``) set the model and its training. Without a ``config``,
    ``recipe`` (auto | scratch | pretrained, plada_edge.core.recipes) fills every option left unset.
    """

    target = load_target(target) if isinstance(target, (str, os.PathLike)) else target
    if config is None:
        options = teacher_options(TargetFacts.of(target), recipe, options)
        recipe = options.pop("recipe")
    else:
        recipe = "config"
    cfg = with_options(config, TeacherConfig, options)
    out = Path(out)
    gray = target.channels == 1
    spec = ViewSpec(native_size=target.native_size, model_size=cfg.size, gray=gray, frame=cfg.view_frame(gray))
    view = torch_view(spec, input_size=target.native_size)
    test = (as_nhwc3(target.x_test), target.y_test) if len(target.y_test) else None  # no test split: no accuracy
    identity = {"target_sha256": target.sha256(), "arch": cfg.arch, "size": cfg.size, "weights": cfg.weights}
    if spec.frame != "none":  # teachers resumed from before frames existed keep their identity
        identity["frame"] = spec.frame
    device = resolve_device(cfg.device)
    run = TrainingRun(cfg.arch, target.num_classes, cfg.weights, cfg.train, device, cfg.precision)
    with output_lock(out):  # one writer per teacher folder
        images = as_nhwc3(target.x_train)
        fit_on = {"eval_set": test, "resume": resume, "progress": progress}
        model, history = run.fit(view, images, target.y_train, out, identity, **fit_on)
        fields = {"arch": cfg.arch, "num_classes": target.num_classes, "class_names": target.class_names,
                  "view": spec.to_dict(), "target": target.describe(), "train": asdict(cfg.train),
                  "weights": cfg.weights, "recipe": recipe}  # fmt: skip
        anchors = anchor_features(model, spec, target, device=device)
        sha = save_model(out / TEACHER_FILE, model, **fields, anchors=anchors)
        held_out = [
            _blind_teacher(run, view, spec, target, images, fold, out, identity, fields, sha, resume, progress)
            for fold in range(len(target.holdout_folds()))
        ]
        metrics = {
            "target": target.name,
            "arch": cfg.arch,
            "recipe": recipe,
            "size": cfg.size,
            "weights": cfg.weights,
            "frame": spec.frame,
            "test_acc": history[-1].get("test_acc"),
            "holdout_acc": held_out[0] if held_out else None,  # fold 0's, the teacher's recorded holdout
            "holdout_folds": held_out,  # each fold's blind teacher on its held-out images
            "train_acc": history[-1]["train_acc"],
            "epochs": cfg.train.epochs,
            "history": history,
            "view": spec.to_dict(),
            "checkpoint_sha256": sha,
            "device": device,
        }
        atomic.write_json(out / METRICS_FILE, metrics)
    return TeacherResult(metrics)


def _blind_teacher(
    run, view, spec, target: Target, images, fold: int, out: Path, identity, fields, teacher_sha, resume, progress
) -> float | None:
    """The blind teacher of ``fold``: the teacher's recipe trained without that fold's held-out images, saved as
    a teacher of its own in ``out``/blind_name(fold) (it picks and labels the fold's trial payloads); its accuracy
    on them (None: too few to hold out). The forecast divides by it: a trial student's held-out accuracy
    becomes a share of its teacher, and that share times the teacher's test accuracy is the estimate."""
    held = target.holdout(fold)
    if len(held) < 10 or len(held) >= len(target.y_train):
        return None
    out = out / blind_name(fold)
    rest = np.setdiff1d(np.arange(len(target.y_train)), held)
    held_sha = hashlib.sha256(held.astype(np.int64).tobytes()).hexdigest()  # resumes only the same holdout's
    blind, _ = run.fit(view, images[rest], target.y_train[rest], out, {**identity, "blind_to": held_sha},
                       resume=resume, progress=progress)  # fmt: skip
    acc = accuracy(blind, view, images[held], target.y_train[held], device=run.device)
    described = {**fields["target"], "holdout": held.tolist()}  # the images this one never saw
    save_model(out / TEACHER_FILE, blind, **{**fields, "target": described}, blind_of=teacher_sha,
               anchors=anchor_features(blind, spec, target, device=run.device, held_out=held))  # fmt: skip
    atomic.write_json(out / METRICS_FILE, {"target": target.name, "holdout_acc": acc, "blind_of": teacher_sha,
                                           "fold": fold})  # fmt: skip
    return acc


def anchor_features(
    model, spec: ViewSpec, target: Target, limit: int = NEAREST_ANCHORS, device: str = "cpu", held_out=None
):
    """L2-normalised pooled features (m, d) float16 of up to ``limit`` training images (a seeded sample), the
    forecast's held-out images (``held_out``, Target.holdout() unless given) left out."""
    held_out = target.holdout() if held_out is None else held_out
    candidates = np.setdiff1d(np.arange(len(target.y_train)), held_out)
    pick = np.sort(np.random.default_rng(0).permutation(candidates)[:limit])
    view = torch_view(spec, input_size=target.native_size)
    _, f = predict(model, view, as_nhwc3(target.x_train[pick]), with_features=True, device=device)
    f = f.reshape(len(f), -1)
    return (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float16)


def load_teacher(path: str | os.PathLike):
    """(model in eval mode, its saved state dict minus weights) from teacher.pt or its directory."""

    path = Path(path)
    file = path / TEACHER_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no teacher checkpoint at {file} (run: plada-edge teacher train ...)")
    state = load_checkpoint(file)
    if "arch" not in state or "num_classes" not in state:
        raise ModelError(f"{file} is a checkpoint but not a teacher (run: plada-edge teacher train ...)")
    model = create_model(state["arch"], state["num_classes"])
    model.load_state_dict(state["model"])
    model.eval()
    meta = {k: v for k, v in state.items() if k != "model"}
    meta["checkpoint_sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    metrics = file.parent / METRICS_FILE
    if metrics.exists():
        meta["metrics"] = json.loads(metrics.read_text())
    return model, meta


def graph_module(model, view, with_features: bool, anchors: np.ndarray | None = None):
    """The teacher's ONNX graph as a torch module: uint8 NHWC images in; logits [+ features] [+ distance] out.

    export_onnx exports it; the torch scoring engine (plada_edge.server.torch_scoring) runs it, so
    both compute the same view and outputs.
    """
    return _Exported.wrap(model, view, with_features, anchors)


class _Exported:  # built lazily so importing this module does not import torch
    @staticmethod
    def wrap(model, view, with_features: bool, anchors: np.ndarray | None = None):
        import torch

        class PackToLogits(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.view, self.model = view, model
                self.holder = feature_hook(model) if with_features or anchors is not None else None
                self.with_features, self.nearest = with_features, anchors is not None
                if anchors is not None:
                    self.register_buffer("anchors_t", torch.tensor(np.asarray(anchors, np.float32).T.copy()))
                    self.k = min(NEAREST_K, len(anchors))

            def forward(self, images):
                logits = self.model(self.view(images))
                if self.holder is None:
                    return logits
                out = [logits]
                features = self.holder["features"].flatten(1)
                if self.with_features:
                    out.append(features)
                if self.nearest:
                    similarity = torch.nn.functional.normalize(features, dim=1) @ self.anchors_t
                    out.append(1.0 - similarity.topk(self.k, dim=1).values.mean(1))
                return tuple(out)

        return PackToLogits().eval()


def export_onnx(
    teacher: str | os.PathLike,
    out: str | os.PathLike,
    input_size: int = 32,
    with_features: bool = True,
    opset: int = 17,
    parity_batch: int = 16,
    tolerance: float = 1e-4,
    *,
    nearest: bool = True,
    target: Target | str | None = None,
    blind: bool = True,
) -> ExportResult:
    """Export teacher.pt to ONNX (uint8 NHWC in; logits [+ features] [+ distance] out), check and verify it.

    ``nearest``: add the ``distance`` output from the teacher's anchors. A teacher trained before
    anchors were kept gets them from ``target``'s training images when given, else no distance.
    ``blind``: export its blind teachers too, where it has them, to blind_path(``out``, fold) (for forecasts).
    Raises ModelError when onnxruntime's outputs differ from torch's by more than ``tolerance``.
    """
    import onnx

    model, meta = load_teacher(teacher)
    spec = ViewSpec.from_dict(meta["view"])
    anchors = meta.get("anchors") if nearest else None
    if nearest and anchors is None and target is not None:
        target = load_target(target) if isinstance(target, (str, os.PathLike)) else target
        anchors = anchor_features(model, spec, target)
    wrapped = graph_module(model, torch_view(spec, input_size=input_size), with_features, anchors)
    outputs = ["logits"] + ["features"] * with_features + ["distance"] * (anchors is not None)
    proto = export_onnx_graph(wrapped, input_size, outputs, opset)
    props = {
        "plada.format": "plada-teacher-v1",
        "plada.arch": meta["arch"],
        "plada.class_names": json.dumps(meta["class_names"]),
        "plada.input_size": str(input_size),
        "plada.view": json.dumps(spec.to_dict()),
        "plada.normalization": json.dumps({"mean": list(spec.mean), "std": list(spec.std)}),
        "plada.checkpoint_sha256": meta["checkpoint_sha256"],
        "plada.target": json.dumps(meta.get("target", {})),
        "plada.test_acc": _text(meta.get("metrics", {}).get("test_acc")),
        "plada.holdout_acc": _text(meta.get("metrics", {}).get("holdout_acc")),
        "plada.blind_of": meta.get("blind_of") or "",  # a blind teacher names the teacher it stands beside
        "plada.anchors": json.dumps({"count": 0 if anchors is None else len(anchors), "k": NEAREST_K}),
        # whether its features came from ImageNet or from the target alone: strategy by-teacher reads it
        "plada.pretrained": json.dumps(is_pretrained(meta["arch"], meta.get("weights"))),
    }
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    diff = _parity(wrapped, data, outputs, input_size, parity_batch, tolerance)
    atomic.write_bytes(out, data)
    folder = Path(teacher if Path(teacher).is_dir() else Path(teacher).parent)
    twins = []
    for fold in itertools.count() if blind else ():
        if not (folder / blind_name(fold) / TEACHER_FILE).is_file():
            break
        twins.append(str(export_onnx(folder / blind_name(fold), blind_path(out, fold), input_size, with_features,
                                     opset, parity_batch, tolerance, nearest=nearest, target=target,
                                     blind=False)["onnx"]))  # fmt: skip
    return ExportResult(
        {
            "onnx": str(out),
            "bytes": len(data),
            "max_abs_logit_diff": diff,
            "parity_batch": parity_batch,
            "input_size": input_size,
            "outputs": outputs,
            "anchors": 0 if anchors is None else len(anchors),
            "checkpoint_sha256": meta["checkpoint_sha256"],
            "test_acc": meta.get("metrics", {}).get("test_acc"),
            "blind": twins,  # the blind teachers' graphs, fold by fold (forecasts)
        }
    )


def _parity(wrapped, data: bytes, outputs: list[str], input_size: int, batch: int, tolerance: float) -> float:
    """onnxruntime against torch on random pack-like images, every output; the max |logit diff|. Raises
    ModelError past ``tolerance`` (features aside: they only feed the distance, which is checked)."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, (batch, input_size, input_size, 3), dtype=np.uint8)
    with torch.inference_mode():
        want = wrapped(torch.from_numpy(x))
    want = want if isinstance(want, tuple) else (want,)
    got = sess.run(outputs, {"images": x})
    diffs = {name: float(np.abs(g - w.numpy()).max()) for name, g, w in zip(outputs, got, want)}
    for name, d in diffs.items():
        if name != "features" and not d <= tolerance:
            raise ModelError(f"ONNX export disagrees with torch: max |{name} diff| {d:.3g} > {tolerance:g}")
    return diffs["logits"]


def export_int8(
    teacher: str | os.PathLike,
    out: str | os.PathLike,
    target: Target | str | None,
    input_size: int = 32,
    calibration_images: int = 512,
) -> dict:
    """Export fp32 to OUT.fp32.onnx, then an int8 copy to OUT calibrated on the target's training images."""
    from ..core.errors import ConfigError
    from .quantize import quantize_teacher

    if target is None:
        raise ConfigError("--int8 calibrates on the target's training images: give --target")
    out = Path(out)
    fp32 = out.with_name(out.stem + ".fp32.onnx")
    report = export_onnx(teacher, fp32, input_size=input_size, with_features=False, nearest=False)
    calibration = calibration_set(target, input_size, calibration_images)
    return dict(quantize_teacher(fp32, out, calibration), fp32=report)


def calibration_set(target: Target | str, input_size: int, count: int = 512) -> np.ndarray:
    """``count`` seeded training images of the target, rendered as a pack of ``input_size`` stores them."""
    from ..core.images import array_to_rgb_tiles

    tgt = load_target(target) if isinstance(target, (str, os.PathLike)) else target
    pick = np.random.default_rng(0).permutation(len(tgt.y_train))[:count]
    return array_to_rgb_tiles(tgt.x_train[np.sort(pick)], input_size, "crop")


def _text(x) -> str:
    return "" if x is None else str(x)


def _number(text: str | None) -> float | None:
    try:
        x = float(text) if text else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


def onnx_metadata(path: str | os.PathLike) -> dict:
    """The plada.* metadata of an exported teacher, parsed, plus the file's SHA-256."""
    import onnx

    data = Path(path).read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("plada.format") != "plada-teacher-v1":
        raise ModelError(f"{path} is not a plada-edge teacher export (no plada.format metadata)")
    return {
        "arch": props["plada.arch"],
        "class_names": json.loads(props["plada.class_names"]),
        "input_size": int(props["plada.input_size"]),
        "view": json.loads(props["plada.view"]),
        "checkpoint_sha256": props["plada.checkpoint_sha256"],
        "target": json.loads(props.get("plada.target", "{}")),
        "test_acc": _number(props.get("plada.test_acc")),
        "holdout_acc": _number(props.get("plada.holdout_acc")),
        "blind_of": props.get("plada.blind_of") or None,
        "pretrained": {"true": True, "false": False}.get(props.get("plada.pretrained", "")),  # None: not said
        "sha256": hashlib.sha256(data).hexdigest(),
        "outputs": [o.name for o in proto.graph.output],
        "anchors": json.loads(props.get("plada.anchors", "{}")).get("count", 0),
    }


def teacher_accuracy(teacher: str | os.PathLike, target: Target) -> float:
    import torch  # noqa: F401

    model, meta = load_teacher(teacher)
    spec = ViewSpec.from_dict(meta["view"])
    return accuracy(model, torch_view(spec, input_size=target.native_size), as_nhwc3(target.x_test), target.y_test)
