"""plada-edge: PLADA, Pseudo-Labels as Data ("A Dataset is Worth 1 MB", arXiv 2602.23358).

A server ships a new image-classification task to devices as a tiny payload of
(reference-image index, hard label) pairs over a reference set every device already stores.

The public API, in pipeline order (examples/quickstart.py runs it end to end)::

    pack = open_pack("data/offline-mix")                  # or build_pack(sources, out)
    train_teacher("fmnist", "runs/t", epochs=10)           # server (paper §3)
    export_teacher("runs/t", "runs/t.onnx", input_size=pack.size)
    scores = score("runs/t.onnx", pack, "runs/scores")     # energy per image, resumable
    sel = select(scores, keep="1%")                        # SelectionConfig: Safety-Net, spread
    make_payload(scores, "task.plada", keep="1%")          # (index, label) pairs, compressed
    learn("task.plada", pack, "runs/student", target="fmnist")   # device (paper §3.3)
    evaluate("runs/student", "fmnist")
    load_student("runs/student").predict(images)           # class names and probabilities

Options travel as frozen parameter objects (``SelectionConfig``, ``TrainConfig``,
``TeacherConfig``, ``StudentConfig``, ``ScoreConfig``) holding the measured defaults; every
function also takes their fields as keywords. Bad input raises ``PladaError``.

Layout: ``plada_edge.core`` is what both sides share (kernels, reference pack, payload, configs),
``plada_edge.server`` builds payloads, ``plada_edge.device`` learns from them, ``plada_edge.cli``
is the thin command line. Names resolve on first use, so ``import plada_edge`` stays cheap and
torch, onnxruntime and faiss load only when a function needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute); resolved on first access, then cached in the module
_API = {
    # reference packs and targets (shared core)
    "open_pack": ("plada_edge.core.reference", "open_pack"),
    "build_pack": ("plada_edge.core.reference", "build_pack"),
    "load_target": ("plada_edge.core.targets", "load_target"),
    # server: teacher, energy scores, selection, payload
    "train_teacher": ("plada_edge.server.teacher", "train_teacher"),
    "export_teacher": ("plada_edge.server.teacher", "export_onnx"),
    "score": ("plada_edge.server.scoring", "score_pack"),
    "open_scores": ("plada_edge.server.scoring", "open_scores"),
    "select": ("plada_edge.server.selection", "select"),
    "make_payload": ("plada_edge.server.packing", "make_payload"),
    "read_payload": ("plada_edge.core.payload", "read_payload"),
    # device: student
    "learn": ("plada_edge.device.student", "learn"),
    "evaluate": ("plada_edge.device.student", "evaluate"),
    "load_student": ("plada_edge.device.predictor", "load_student"),
    # parameter objects and errors
    "SelectionConfig": ("plada_edge.core.config", "SelectionConfig"),
    "TrainConfig": ("plada_edge.core.config", "TrainConfig"),
    "TeacherConfig": ("plada_edge.core.config", "TeacherConfig"),
    "StudentConfig": ("plada_edge.core.config", "StudentConfig"),
    "ScoreConfig": ("plada_edge.core.config", "ScoreConfig"),
    "PladaError": ("plada_edge.core.errors", "PladaError"),
    # registries and diagnostics
    "list_models": ("plada_edge.core.models", "list_models"),
    "list_strategies": ("plada_edge.server.selection", "list_strategies"),
    "list_codecs": ("plada_edge.core.codecs", "list_codecs"),
    "energy_stats": ("plada_edge.core.native", "energy_stats"),
    "doctor": ("plada_edge.core.doctor", "doctor"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'plada_edge' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(import_module(module), attr)
    globals()[name] = value  # the same object on every later access
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
