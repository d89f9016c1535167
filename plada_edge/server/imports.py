"""Bring your own teacher: wrap any ONNX image classifier into a plada-edge teacher (paper §3).

Scoring (plada_edge.server.scoring) feeds teachers what a reference pack stores: uint8 NHWC images
of the pack's size. A user's model wants something else: NCHW or NHWC, floats in 0-1 or 0-255, its
own mean/std, its own input size, and it may end in a softmax. ``import_onnx`` prepends exactly
that preprocessing as ONNX nodes, so the result takes pack images and returns ``logits``:

    uint8 (N, S, S, 3) → float → × scale → [NCHW] → resize to the model's size → (x − mean) / std
                       → the user's graph → [log, for probability outputs] → logits

It checks parity against the original model on random images (the preprocessing done in torch,
the original graph in onnxruntime), and records the plada.* metadata that ``score`` reads: class
names (``--classes FILE``, the model's own metadata, or class_0..), input size, and the sensor
view a student trains through. With probability outputs the energy −logsumexp(log p) is 0 for
every image, so such teachers should select by ``--strategy entropy``; the import report says so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import atomic
from ..core.errors import ModelError
from ..core.view import IMAGENET_MEAN, IMAGENET_STD, ViewSpec

NORMALISATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None


def _dims(value_info) -> list:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value_info.type.tensor_type.shape.dim
    ]


def _class_names(proto, classes: str | os.PathLike | None, count: int) -> list[str]:
    if classes is not None:
        names = [line.strip() for line in Path(classes).read_text().splitlines() if line.strip()]
    else:
        props = {p.key: p.value for p in proto.metadata_props}
        names = []
        for key in ("plada.class_names", "class_names", "classes", "labels"):
            if key in props:
                try:
                    value = json.loads(props[key])
                    names = [str(v) for v in (value.values() if isinstance(value, dict) else value)]
                except (ValueError, TypeError):
                    names = [s.strip() for s in props[key].split(",") if s.strip()]
                break
        names = names or [f"class_{i}" for i in range(count)]
    if len(names) != count:
        raise ModelError(f"{len(names)} class names for a model with {count} outputs")
    return names


def import_onnx(
    model: str | os.PathLike,
    out: str | os.PathLike,
    input_size: int = 32,
    layout: str = "auto",
    scale: float = 1.0,
    normalisation: str | tuple = "imagenet",
    probabilities: bool = False,
    classes: str | os.PathLike | None = None,
    test_acc: float | None = None,
    parity_batch: int = 8,
    tolerance: float = 1e-4,
) -> dict:
    """Wrap ``model`` so it reads uint8 NHWC images of ``input_size`` px and outputs ``logits``.

    ``layout``: "nchw", "nhwc" or "auto" (from which axis has 3 channels). ``scale``: the model
    expects pixels in [0, scale] (1 or 255). ``normalisation``: "imagenet", "half" (0.5/0.5),
    "none", or a (mean, std) pair, applied after scaling. ``probabilities``: the model ends in a
    softmax (its log is taken). Raises ModelError when the wrapper disagrees with the original.
    """
    path = Path(model)
    graph = _ForeignGraph.read(path, layout, input_size)
    mean, std = NORMALISATIONS[normalisation] if isinstance(normalisation, str) else normalisation
    if not (scale > 0 and all(s > 0 for s in std)):
        raise ModelError("scale and std must be positive")
    names = _class_names(graph.proto, classes, graph.classes)
    imported = {
        "layout": graph.layout,
        "scale": scale,
        "mean": list(mean),
        "std": list(std),
        "model_size": list(graph.size),
        "probabilities": probabilities,
    }
    original = path.read_bytes()
    merged = _wrap(graph, input_size, scale, mean, std, probabilities)
    _describe(merged, path, original, names, input_size, test_acc, imported)
    data = merged.SerializeToString()
    diff = _parity(
        original, data, graph.input.name, graph.layout, graph.size, scale, mean, std, probabilities, input_size,
        parity_batch,
    )  # fmt: skip
    if not diff <= tolerance:
        raise ModelError(f"the wrapped model disagrees with {path}: max |logit diff| {diff:.3g} > {tolerance:g}")
    atomic.write_bytes(out, data)
    return {
        "onnx": str(out),
        "bytes": len(data),
        "classes": len(names),
        "class_names": names,
        "layout": graph.layout,
        "model_size": list(graph.size),
        "input_size": input_size,
        "max_abs_logit_diff": diff,
        "warning": "probability outputs: energy is the same for every image; select with --strategy entropy"
        if probabilities
        else None,
    }


@dataclass
class _ForeignGraph:
    """A user's ONNX classifier as read: its image input and score output, layout, input size, opset."""

    path: Path
    proto: Any
    input: Any
    output: Any
    layout: str
    size: tuple[int, int]  # the model's own input height and width
    classes: int
    opset: int

    @classmethod
    def read(cls, path: Path, layout: str, input_size: int) -> _ForeignGraph:
        proto = _load(path)
        if not proto.graph.output:
            raise ModelError(f"{path}: expected a graph with an image input and a class-score output")
        inits = {i.name for i in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
        x, y = inputs[0], proto.graph.output[0]
        dims = _dims(x)
        if len(dims) != 4:
            raise ModelError(f"{path}: input {x.name!r} has shape {dims}, expected 4-D images")
        if layout == "auto":
            layout = "nchw" if dims[1] == 3 else "nhwc" if dims[3] == 3 else ""
            if not layout:
                raise ModelError(f"{path}: cannot tell the channel axis of input shape {dims}; pass --layout")
        if layout not in ("nchw", "nhwc"):
            raise ModelError(f"layout must be nchw, nhwc or auto, got {layout!r}")
        h, w = (dims[2], dims[3]) if layout == "nchw" else (dims[1], dims[2])
        size = tuple(d if isinstance(d, int) and d > 0 else input_size for d in (h, w))
        classes = _dims(y)[-1]
        if not isinstance(classes, int) or classes < 1:
            raise ModelError(f"{path}: output {y.name!r} has shape {_dims(y)}; its last axis must be the classes")
        opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=13)
        if opset < 13:
            from onnx import version_converter

            proto, opset = version_converter.convert_version(proto, 13), 13
        return cls(path, proto, x, y, layout, size, classes, opset)


def _preprocess(graph: _ForeignGraph, input_size: int, scale: float, mean, std):
    """uint8 NHWC pack images → what the model wants: scaled, resized to its size, normalised, in its layout."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, consts = [], []

    def const(name: str, value) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    nodes.append(helper.make_node("Cast", ["images"], ["pre_float"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Mul", ["pre_float", const("pre_scale", scale / 255.0)], ["pre_scaled"]))
    nodes.append(helper.make_node("Transpose", ["pre_scaled"], ["pre_nchw"], perm=[0, 3, 1, 2]))
    cur = "pre_nchw"
    if graph.size != (input_size, input_size):
        consts.append(numpy_helper.from_array(np.array(graph.size, np.int64), "pre_hw"))
        nodes.append(helper.make_node("Shape", [cur], ["pre_shape"], start=0, end=2))
        nodes.append(helper.make_node("Concat", ["pre_shape", "pre_hw"], ["pre_sizes"], axis=0))
        resize = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
        nodes.append(helper.make_node("Resize", [cur, "", "", "pre_sizes"], ["pre_resized"], **resize))
        cur = "pre_resized"
    nodes.append(helper.make_node("Sub", [cur, const("pre_mean", np.reshape(mean, (1, 3, 1, 1)))], ["pre_centred"]))
    nodes.append(
        helper.make_node("Div", ["pre_centred", const("pre_std", np.reshape(std, (1, 3, 1, 1)))], ["pre_norm"])
    )
    cur = "pre_norm"
    if graph.layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [cur], ["pre_nhwc"], perm=[0, 2, 3, 1]))
        cur = "pre_nhwc"
    nodes.append(helper.make_node("Identity", [cur], ["pre_out"]))
    return helper.make_graph(
        nodes,
        "plada_preprocess",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", input_size, input_size, 3])],
        [helper.make_tensor_value_info("pre_out", TensorProto.FLOAT, None)],
        initializer=consts,
    )


def _postprocess(classes: int, probabilities: bool):
    """The model's scores → ``logits``: as they are, or the log of a softmax's probabilities."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = (
        [
            helper.make_node("Clip", ["post_in", "post_eps", ""], ["post_clipped"]),
            helper.make_node("Log", ["post_clipped"], ["logits"]),
        ]
        if probabilities
        else [helper.make_node("Identity", ["post_in"], ["logits"])]
    )
    return helper.make_graph(
        nodes,
        "plada_postprocess",
        [helper.make_tensor_value_info("post_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(np.array(1e-12, np.float32), "post_eps")] if probabilities else [],
    )


def _wrap(graph: _ForeignGraph, input_size: int, scale: float, mean, std, probabilities: bool):
    """preprocess → the user's graph (its names prefixed m_) → postprocess, as one model with one output."""
    import onnx
    from onnx import TensorProto, compose, helper

    imports = [helper.make_opsetid("", graph.opset)]
    ir = graph.proto.ir_version
    pre = helper.make_model(_preprocess(graph, input_size, scale, mean, std), opset_imports=imports, ir_version=ir)
    post = helper.make_model(_postprocess(graph.classes, probabilities), opset_imports=imports, ir_version=ir)
    user = onnx.ModelProto()
    user.CopyFrom(graph.proto)
    del user.metadata_props[:]
    try:
        merged = compose.merge_models(pre, user, io_map=[("pre_out", graph.input.name)], prefix2="m_")
        merged = compose.merge_models(merged, post, io_map=[("m_" + graph.output.name, "post_in")])
    except Exception as exc:  # onnx.compose raises plain ValueErrors and checker errors
        raise ModelError(f"{graph.path}: cannot wrap this graph ({exc})") from None
    del merged.graph.output[:]
    merged.graph.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", graph.classes])])
    return merged


def _describe(merged, path: Path, original: bytes, names, input_size: int, test_acc, imported: dict) -> None:
    """The plada teacher metadata score, pack and serve read, then the checker's word on the result."""
    import onnx

    view = ViewSpec(native_size=input_size, model_size=input_size)
    props = {
        "plada.format": "plada-teacher-v1",
        "plada.arch": f"imported:{path.stem}",
        "plada.class_names": json.dumps(names),
        "plada.input_size": str(input_size),
        "plada.view": json.dumps(view.to_dict()),
        "plada.checkpoint_sha256": hashlib.sha256(original).hexdigest(),
        "plada.target": json.dumps({}),
        "plada.test_acc": "" if test_acc is None else str(test_acc),
        "plada.imported": json.dumps(imported),
    }
    for k, v in props.items():
        e = merged.metadata_props.add()
        e.key, e.value = k, v
    try:
        onnx.checker.check_model(merged)
    except Exception as exc:
        raise ModelError(f"{path}: the wrapped graph does not check ({exc})") from None


def _parity(
    original: bytes,
    wrapped: bytes,
    input_name: str,
    layout: str,
    size,
    scale,
    mean,
    std,
    probabilities,
    input_size: int,
    batch: int,
) -> float:
    """Max |wrapped(uint8) − f(original(preprocess(uint8)))|, with the preprocessing done in torch."""
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

    imgs = np.random.default_rng(0).integers(0, 256, (batch, input_size, input_size, 3), dtype=np.uint8)
    x = torch.from_numpy(imgs).float() * (scale / 255.0)
    x = x.permute(0, 3, 1, 2)
    if tuple(size) != (input_size, input_size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if layout == "nhwc":
        x = x.permute(0, 2, 3, 1)
    cpu = ["CPUExecutionProvider"]
    want = ort.InferenceSession(original, providers=cpu).run(None, {input_name: x.contiguous().numpy()})[0]
    if probabilities:
        want = np.log(np.clip(want, 1e-12, None))
    got = ort.InferenceSession(wrapped, providers=cpu).run(["logits"], {"images": imgs})[0]
    return float(np.abs(got - want).max())


def parse_normalisation(text: str):
    """'imagenet' | 'half' | 'none' | 'M,M,M/S,S,S' → a NORMALISATIONS name or a (mean, std) pair."""
    if text in NORMALISATIONS:
        return text
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in text.split("/"))
    except ValueError:
        raise ModelError(f"normalisation must be imagenet, half, none or M,M,M/S,S,S; got {text!r}") from None
    if len(mean) != 3 or len(std) != 3:
        raise ModelError(f"normalisation needs 3 means and 3 stds, got {text!r}")
    return tuple(mean), tuple(std)


def teacher_test_accuracy(teacher: str | os.PathLike, target, record: bool = False) -> float:
    """Accuracy of an exported or imported teacher .onnx on the target's test images, rendered as the pack's.

    With ``record`` the figure is written into the file's plada.test_acc (payload headers show it).
    """
    import onnx
    import onnxruntime as ort

    from ..core.images import array_to_rgb_tiles
    from ..core.targets import load_target
    from .teacher import onnx_metadata

    meta = onnx_metadata(teacher)
    tgt = load_target(target) if isinstance(target, (str, os.PathLike)) else target
    if tgt.num_classes != len(meta["class_names"]):
        raise ModelError(f"teacher has {len(meta['class_names'])} classes, target {tgt.name} has {tgt.num_classes}")
    images = array_to_rgb_tiles(tgt.x_test, meta["input_size"], "crop")
    sess = ort.InferenceSession(str(teacher), providers=["CPUExecutionProvider"])
    pred = (
        np.concatenate(
            [sess.run(["logits"], {"images": images[b : b + 256]})[0].argmax(1) for b in range(0, len(images), 256)]
        )
        if len(images)
        else np.zeros(0, np.int64)
    )
    acc = float((pred == tgt.y_test).mean()) if len(pred) else float("nan")
    if record and len(pred):
        proto = onnx.load(str(teacher))
        for p in proto.metadata_props:
            if p.key == "plada.test_acc":
                p.value = str(acc)
        atomic.write_bytes(teacher, proto.SerializeToString())
    return acc
