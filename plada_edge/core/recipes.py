"""``--recipe``: which teacher and student to train, from the target and what is installed (paper §4).

The paper fine-tunes *pretrained* networks on both sides: a ConvNeXt-V2-T teacher (ImageNet-21K)
and a ResNet-18 student (ImageNet). Here the same idea meets what a CPU box has installed. The
rule, and the suite runs behind every number in it, are in docs/results.md ("Defaults, and why";
written by benchmarks/suite.py):

- ``scratch``: resnet18 from random init at the pack's 32 px view (the recipe before this one).
- ``pretrained``: an ImageNet-initialised network (the first of PRETRAINED_ARCHS with weights
  installed) at 64 px, trained with PRETRAINED_TRAIN (a linear probe on the frozen backbone).
- ``auto`` (the default): ``pretrained`` for colour targets when weights are installed, else
  ``scratch``. Grayscale sensors (fmnist, digits) stay on ``scratch``, which the suite measured
  better there.

A recipe only fills what the user left unset: every explicit option wins. Naming an
architecture keeps the recipe's training settings for that kind of start (pretrained weights or
not), so ``--arch tiny_cnn`` stays a fast from-scratch run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

RECIPES = ("auto", "scratch", "pretrained")
# the options a recipe may fill (the CLI leaves them unset unless given); the rest keep the config defaults
RECIPE_FIELDS = (
    "arch",
    "size",
    "model_size",
    "weights",
    "epochs",
    "lr",
    "backbone_lr",
    "augment",
    "label_smoothing",
    "hflip",
)
PRETRAINED_ARCHS = ("efficientnet_lite0", "resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")
PRETRAINED_SIZE = 64  # ImageNet features need more than 32 px to be of use
# a linear probe: the ImageNet backbone stays frozen and its features are computed once, so a
# pretrained student costs about one forward pass over its images (docs/results.md, "suite")
PRETRAINED_TRAIN = dict(lr=3e-3, backbone_lr=0.0, hflip=True)
PRETRAINED_EPOCHS = 30  # teacher and student alike


@dataclass(frozen=True)
class TargetFacts:
    """What the recipe looks at: colour or not, native size, labelled training images, classes."""

    channels: int
    native_size: int
    n_train: int
    num_classes: int

    @classmethod
    def of(cls, target) -> TargetFacts:
        return cls(target.channels, target.native_size, int(len(target.y_train)), target.num_classes)


def installed_pretrained_arch() -> str | None:
    """The first architecture in PRETRAINED_ARCHS whose ImageNet weights are on this machine."""
    from .models import pretrained_weights

    for arch in PRETRAINED_ARCHS:
        if pretrained_weights(arch) is not None:
            return arch
    return None


def is_pretrained(arch: str, weights: Any) -> bool:
    """Whether a network of ``arch`` built with ``weights`` starts from pretrained (ImageNet) features."""
    return weights is not None or arch == "efficientnet_lite0"  # Lite0 always loads its pip weights


def _kind(recipe: str, colour: bool, options: dict) -> tuple[str, str | None]:
    """(scratch | pretrained, the architecture with weights when pretrained)."""
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    arch, weights = options.get("arch"), options.get("weights")
    if arch is not None:  # the user chose the model: its start decides the training settings
        return ("pretrained" if is_pretrained(arch, weights) else "scratch"), None
    if recipe == "scratch" or (recipe == "auto" and not colour):
        return "scratch", None
    found = installed_pretrained_arch()
    if found is None:
        if recipe == "pretrained":
            from .models import resolve_weights

            resolve_weights(PRETRAINED_ARCHS[0], "imagenet")  # raises the one-line "install this" error
        return "scratch", None
    return "pretrained", found


def _options(colour: bool, recipe: str, options: dict | None, size_field: str) -> dict[str, Any]:
    given = {k: v for k, v in (options or {}).items() if v is not None}
    kind, arch = _kind(recipe, colour, given)
    chosen: dict[str, Any] = {}
    if kind == "pretrained":
        chosen = dict(PRETRAINED_TRAIN, epochs=PRETRAINED_EPOCHS, **{size_field: PRETRAINED_SIZE})
        if arch is not None:
            chosen.update(arch=arch, weights="imagenet")
    return {**chosen, **given, "recipe": kind}


def teacher_options(facts: TargetFacts, recipe: str = "auto", options: dict | None = None) -> dict[str, Any]:
    """Flat TeacherConfig options: the recipe's choices under the user's ``options`` (None = unset)."""
    return _options(facts.channels == 3, recipe, options, "size")


def student_options(gray: bool, recipe: str = "auto", options: dict | None = None) -> dict[str, Any]:
    """Flat StudentConfig options for a payload whose view is ``gray`` or colour (None = unset)."""
    return _options(not gray, recipe, options, "model_size")
