"""Parameter objects and rules: every option of the pipeline, its default and every "auto" rule, defined once.

The CLI, ``tasks.toml`` and the Python API all build these frozen dataclasses and hand them down
unchanged, so a default lives here and nowhere else (tests/test_api.py holds the three together).

- ``SelectionConfig`` (paper §3.2): the order, the Safety-Net's quotas and power, the spread. Its
  "auto" and "by-*" values are resolved by one function, plada_edge.server.plan.plan_selection, with
  the rules below (``RULES`` says what each does and which section of docs/results.md measured it).
- ``TrainConfig`` (paper §4): AdamW, lr 1e-3, cosine schedule with warm-up. Teachers train 10
  epochs, students 30 (the paper's count on an ImageNet-1K-sized pool).
- ``TeacherConfig`` / ``StudentConfig``: the model around a ``TrainConfig``; a grayscale teacher's view
  frames images by their ink (``frame``, FRAME).
- ``ScoreConfig``: how the pack is streamed through the teacher (paper §3, energy scoring).

These defaults are the ``scratch`` recipe's; ``--recipe auto|pretrained`` (plada_edge.core.recipes)
fills the options a user leaves unset from the target and the installed weights. Every object
validates itself on construction and raises ``ConfigError`` naming the option; ``from_options``
builds one from flat keyword options (the CLI's and tasks.toml's shape).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from .devices import DEVICE_HELP, PRECISIONS, check_device_spec
from .errors import ConfigError

AUGMENTS = ("shift", "trivial")
# fit writes its resume checkpoint after an epoch only once this many seconds have passed since the last one (and
# after the final epoch): a ResNet-18 checkpoint with its AdamW state is over 100 MB (docs/benchmarks.md, "checkpoint")
CHECKPOINT_SECONDS = 30.0
# on a GPU, fit keeps the uint8 training images there when they take at most this share of its free memory
# (1 % of ImageNet-21K at 64 px is ~1.7 GB); otherwise a helper thread gathers each batch on the host
RESIDENT_GPU_SHARE = 0.25
PROBE_BATCH_GPU = 1024  # a frozen backbone's features (the linear probe) are computed in batches this large on a GPU
# strategy "nearest": a teacher keeps the pooled features of up to NEAREST_ANCHORS of its training images; an image's
# distance is 1 - the mean cosine similarity of its NEAREST_K most similar anchors (plada_edge.server.teacher)
NEAREST_ANCHORS = 2048
NEAREST_K = 5

KEEP = "1%"  # the budget when none is given: the paper's 1 % of the reference set
# the forecast (plada_edge.server.forecast) scores a trial student on this share of the target's training images
# (stratified, seeded, at most HOLDOUT_MAX, drawn as the test split was): a teacher keeps them out of its
# nearest-order anchors and trains a blind twin without them, so nothing it learned from them reaches the trial
HOLDOUT_SHARE = 0.2
HOLDOUT_MAX = 1000
# a fold of HOLDOUT_SHARE held out once is few images on a small target (116 on tango), too few to judge by: the
# forecast holds out further folds, each with a blind teacher of its own, until HOLDOUT_MAX images are held out,
# at most HOLDOUT_FOLDS (every training image once); each fold costs a teacher and a scoring pass, once
HOLDOUT_FOLDS = 5
# resamples of the held-out images' groups (icons) behind the forecast's interval, where a target records groups
HOLDOUT_BOOTSTRAP = 2000
# a goal's search (pack --goal) goes no further than this share of the pack unless max_bytes says how far: each
# step trains a student, so a goal the forecast never reaches must not end in one trained on the whole pack
GOAL_MAX_KEEP = "10%"

# --- the selection's rules: each constant below is applied by one resolver (plada_edge.server.plan), which names
# the rule in the plan it prints (`select --explain`); RULES says what each does and where it was measured.
AUTO_SPREAD = {"gray": (0.08, 8.0), "colour": (0.32, 32.0)}  # spread="auto": s = clip(band * N / k, 1, most)
QUOTAS = ("auto", "target", "pool")  # how the Safety-Net sizes its per-class quotas (SelectionConfig.quotas)
QUOTA_IMBALANCE = 3.0  # quotas="auto": target quotas when the target's largest class has >= this x its smallest's
TEACHER_STRATEGY = {"pretrained": "nearest", "scratch": "energy", "scratch, near-copies": "nearest"}
NEAR_COPY_QUANTILE = 0.01  # near-copies: the pool's 1 % nearest-distance quantile ...
NEAR_COPY_RATIO = 0.3  # ... under 0.3 of its median (a finer quantile is fooled by repeated blank images)
VIEW_STRATEGY = {"gray": "energy", "colour": "nearest"}
TARGET_POWER = {"nearest": 0.5}  # target_power="auto" by the order quotas are filled in; 1 in any other
FRAMES = ("none", "ink")  # how a view frames each image (plada_edge.core.view)
FRAME = {"gray": "ink", "colour": "none"}  # TeacherConfig.frame="auto" by the target's view


@dataclass(frozen=True)
class Rule:
    """One default the selection plan applies: what it does, and the measurement behind it."""

    does: str
    evidence: str


SUITE_DOC = 'docs/results.md, "suite"'
RULES = {
    "TEACHER_STRATEGY": Rule(
        "by-teacher: nearest for an ImageNet-pretrained teacher; for one trained from scratch, nearest where the "
        "pool holds near-copies of the target's images (NEAR_COPY_RATIO), else energy; by-view when the "
        "teacher's export does not say",
        f'{SUITE_DOC}, strategy table, and "near_copies"',
    ),
    "VIEW_STRATEGY": Rule(
        "by-view: nearest for a colour teacher, energy for a grayscale one", f"{SUITE_DOC}, strategy table"
    ),
    "QUOTA_IMBALANCE": Rule(
        f"quotas=auto: the whole budget by the target's own class counts when its largest class has "
        f"{QUOTA_IMBALANCE:g}x its smallest's training images or more, else pool quotas",
        f"{SUITE_DOC}, quota table",
    ),
    "TARGET_POWER": Rule(
        "target_power=auto: quotas follow the square root of the target's class counts in nearest order, "
        "its own proportions in any other",
        f"{SUITE_DOC}, power table",
    ),
    "AUTO_SPREAD": Rule(
        "spread=auto: each quota drawn at random from up to 8x its size (32x for a colour teacher), shrinking "
        "to the strict order as that band nears 8 % (32 %) of the pool",
        f"{SUITE_DOC}, spread table",
    ),
    "FRAME": Rule(
        "frame=auto: a grayscale teacher sees every image light-on-dark with its ink filling the frame; colour as is",
        f"{SUITE_DOC}, frame table",
    ),
}

# local: onnxruntime in this process (the torch engine where it cannot reach an asked-for GPU); torch: the
# teacher's graph run by torch on CUDA, MPS or CPU; ray: chunks over Ray actors (plada_edge.server.engines)
SCORE_ENGINES = ("local", "torch", "ray")
STORES = ("raw", "jpeg", "webp")  # how a reference pack stores its images (plada_edge.core.storage)
RESIZE_METHODS = ("crop", "pad")  # how an image of another size becomes a pack image (plada_edge.core.images)
SCORE_PRECISIONS = ("fp32", "bf16", "fp16")

C = TypeVar("C")


def opt(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    flag: str | None = None,
    name: str | None = None,
    short: str | None = None,
    alias: str | None = None,
    cli_type: type | None = None,
):
    """A config field that is also a command-line option: its help text, declared choices, ``flag`` (a boolean's
    "--on/--off" pair), another option ``name``, a ``short`` form, a hidden old ``alias`` and the ``cli_type``
    a value is parsed as (str for "auto"-or-a-number). The CLI builds its options from these (plada_edge.cli)."""
    meta = {"help": help, "choices": choices, "flag": flag, "name": name, "short": short, "alias": alias}
    return field(default=default, metadata={**meta, "cli_type": cli_type})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _auto_or_number(value: float | str, name: str, ok, rule: str) -> float | str:
    """'auto' or a finite number that passes ``ok``; anything else is a ConfigError that states ``rule``."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be 'auto' or {rule}, got {value!r}") from None
    _check(_finite(value) and ok(value), f"{name} must be 'auto' or {rule}, got {value!r}")
    return float(value)


def parse_target_power(power: float | str) -> float | str:
    """'auto' or a number in [0, 1] (1 = the target's proportions, 0 = equal)."""
    return _auto_or_number(
        power, "target_power", lambda p: 0 <= p <= 1, "in [0, 1] (1 = the target's proportions, 0 = equal)"
    )


def parse_spread(spread: float | str) -> float | str:
    """'auto' or a number >= 1 (1 = strict best-first)."""
    return _auto_or_number(spread, "spread", lambda s: s >= 1, "a number ≥ 1 (1 = strict best-first)")


def parse_expiry(text: str | int | None, now: float) -> int | None:
    """When a release expires, in unix seconds: None/"never"; a duration from ``now`` ("30d", "12h", "90m",
    "3600s"); an ISO date or time ("2027-01-01", "2027-01-01T12:00:00+00:00"); or unix seconds."""
    import datetime as dt

    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "never", "none")):
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        _check(text > now, f"expires must be in the future, got {text}")
        return text
    value = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", value.lower())
    if m:
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        _check(seconds > 0, f"expires must be a positive duration, got {text!r}")
        return int(now + seconds)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"expires must be never, a duration (30d) or a date (2027-01-01), got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    stamp = int(when.timestamp())
    _check(stamp > now, f"expires must be in the future, got {text!r}")
    return stamp


@dataclass(frozen=True)
class SelectionConfig:
    """Which reference images to send, and how (paper §3.2)."""

    strategy: str = opt(
        "by-teacher",
        "by-teacher (nearest for an ImageNet-pretrained teacher; energy for one trained from scratch, unless the "
        "pool holds near-copies of the target's images) | by-view (nearest for a colour teacher, energy for a "
        "grayscale one) | nearest (closest to the target's own training images in the teacher's features) | "
        "energy (lowest energy first, the paper's) | opposite | entropy | random | auto (pack: energy or opposite, "
        "picked by proxy students on held-out target data) | by-forecast (pack: the candidate plans, each "
        "forecast, the best kept; both need --target and --reference). "
        "select --explain shows what the rules chose, and why.",
    )
    safety_net: bool = opt(
        True,
        "Per-class quotas, so no class vanishes (plain lowest energy drops whole classes).",
        flag="--safety-net/--no-safety-net",
    )
    quotas: str = opt(
        "auto",
        "Safety-Net quotas: pool (K_c ∝ N_c^alpha for --share of the budget), target (the whole budget by the "
        "target's training images per class, tempered by --target-power) or auto (target when the target's "
        f"largest class has {QUOTA_IMBALANCE:g}x its smallest's images or more, else pool).",
        choices=QUOTAS,
    )
    target_power: float | str = opt(
        "auto",
        "quotas=target: K_c ∝ n_c^p of the target's training images per class (1 = its proportions, 0 = equal); "
        "auto = " + ", ".join(f"{p:g} in {order} order" for order, p in TARGET_POWER.items()) + ", 1 in any other.",
        cli_type=str,
    )
    alpha: float = opt(-0.2, "Safety-Net exponent: K_c ∝ N_c^alpha.")
    share: float = opt(0.5, "Safety-Net share of the budget reserved for pool quotas.")
    spread: float | str = opt(
        "auto",
        "Diversity: each quota takes its m images at random from its spread·m best, not the m best. 1 = strict "
        f"best-first; auto = up to {AUTO_SPREAD['gray'][1]:g} ({AUTO_SPREAD['colour'][1]:g} for a colour teacher) at "
        f"small keeps, shrinking to 1 as the band nears {AUTO_SPREAD['gray'][0]:.0%} ({AUTO_SPREAD['colour'][0]:.0%}) "
        "of the pool.",
        cli_type=str,
    )
    seed: int = opt(0, "Seed for --strategy random and auto, and for --spread.")

    def __post_init__(self) -> None:
        _check(
            isinstance(self.strategy, str) and bool(self.strategy), f"strategy must be a name, got {self.strategy!r}"
        )
        _check(isinstance(self.safety_net, bool), f"safety_net must be true or false, got {self.safety_net!r}")
        _check(self.quotas in QUOTAS, f"quotas must be one of {', '.join(QUOTAS)}, got {self.quotas!r}")
        object.__setattr__(self, "target_power", parse_target_power(self.target_power))
        _check(_finite(self.alpha), f"alpha must be a finite number, got {self.alpha!r}")
        _check(_finite(self.share) and 0 <= self.share <= 1, f"share must be in [0, 1], got {self.share!r}")
        _check(_whole(self.seed) and self.seed >= 0, f"seed must be a whole number >= 0, got {self.seed!r}")
        object.__setattr__(self, "spread", parse_spread(self.spread))


@dataclass(frozen=True)
class TrainConfig:
    """The training loop teachers and students share (plada_edge.core.train, paper §4)."""

    epochs: int = opt(10, "Training epochs (paper: 30 on a 1K-sized pool, 5 on 21K).")
    batch_size: int = opt(128, "Batch size.")
    lr: float = opt(1e-3, "Peak AdamW learning rate (cosine).")
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps
    seed: int = opt(0, "Random seed.")
    shift: int = 2  # random translation, in model pixels at 32 px (scaled with the model size)
    hflip: bool = opt(False, "Random horizontal flips (off for digits and text).", flag="--hflip/--no-hflip")
    label_smoothing: float = opt(0.0, "Label smoothing.")
    augment: str = opt("shift", "shift (random shifts) or trivial (+ TrivialAugmentWide).", choices=AUGMENTS)
    backbone_lr: float = opt(1.0, "Backbone learning rate as a share of --lr (the head gets --lr; 0 = a linear probe).")
    # a payload's soft labels (its teacher's top two) enter the loss at this weight, the hard label's at 1 - it;
    # temperature 1: the targets are the teacher's own softmax shares (plada_edge.core.payload.SoftLabels)
    soft_mix: float = opt(0.5, "Weight of a payload's soft labels in the loss (the hard label gets the rest).")
    threads: int = 0  # torch intra-op threads (0 = all CPUs)

    def __post_init__(self) -> None:
        _check(_whole(self.epochs) and self.epochs >= 1, f"epochs must be >= 1, got {self.epochs!r}")
        _check(_whole(self.batch_size) and self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size!r}")
        _check(_finite(self.lr) and self.lr > 0, f"lr must be a positive number, got {self.lr!r}")
        _check(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be >= 0, got {self.weight_decay!r}",
        )
        _check(_finite(self.warmup) and 0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup!r}")
        _check(_whole(self.seed) and self.seed >= 0, f"seed must be a whole number >= 0, got {self.seed!r}")
        _check(_whole(self.shift) and self.shift >= 0, f"shift must be >= 0, got {self.shift!r}")
        _check(isinstance(self.hflip, bool), f"hflip must be true or false, got {self.hflip!r}")
        _check(
            _finite(self.label_smoothing) and 0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}",
        )
        _check(self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        _check(
            _finite(self.backbone_lr) and 0 <= self.backbone_lr <= 1,
            f"backbone_lr must be in [0, 1] (a share of lr), got {self.backbone_lr!r}",
        )
        _check(_whole(self.threads) and self.threads >= 0, f"threads must be >= 0, got {self.threads!r}")
        _check(_finite(self.soft_mix) and 0 <= self.soft_mix <= 1, f"soft_mix must be in [0, 1], got {self.soft_mix!r}")


def _model_size_ok(size: Any) -> bool:
    return _whole(size) and 8 <= size <= 1024


@dataclass(frozen=True)
class TeacherConfig:
    """The server's teacher: architecture, input size, initial weights, training (paper §3)."""

    arch: str = opt("resnet18", "Model name (plada-edge models).", short="-a")
    size: int = opt(32, "Model input pixels.")
    weights: str | None = opt(
        None,
        "Initial weights: 'imagenet' (whatever is installed; see plada-edge models), a local "
        ".pt/.pth/.safetensors, or a cached torchvision weight name.",
    )
    device: str = opt("auto", "Where torch runs: " + DEVICE_HELP)
    precision: str = opt(
        "auto",
        "Training precision: auto (bf16, or fp16 with loss scaling, on CUDA; fp32 elsewhere), fp32, bf16 or fp16.",
        choices=PRECISIONS,
    )
    frame: str = opt(
        "auto",
        "How the view frames each image: ink = light-on-dark, the ink's box filling the frame, contrast "
        "stretched (grayscale only); none = as stored; auto = ink for grayscale targets, none for colour.",
        choices=("auto", *FRAMES),
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))

    def __post_init__(self) -> None:
        _check(isinstance(self.arch, str) and bool(self.arch), f"arch must be a model name, got {self.arch!r}")
        _check(_model_size_ok(self.size), f"size must be 8..1024 pixels, got {self.size!r}")
        _check(self.frame in ("auto", *FRAMES), f"frame must be auto, {' or '.join(FRAMES)}, got {self.frame!r}")
        _check_device(self)

    def view_frame(self, gray: bool) -> str:
        """The view's frame for a target that is ``gray`` or colour: FRAME's pick under "auto"."""
        if self.frame == "auto":
            return FRAME["gray" if gray else "colour"]
        _check(self.frame == "none" or gray, "frame 'ink' needs a grayscale target")
        return self.frame

    @classmethod
    def from_options(cls, **options: Any) -> TeacherConfig:
        return _nested(cls, options)


@dataclass(frozen=True)
class StudentConfig:
    """The device's student (paper §3.3): model, optional label expansion, training."""

    arch: str = opt("resnet18", "Student architecture (plada-edge models).", short="-a")
    weights: str | None = opt(
        None,
        "Initial weights: 'imagenet' (whatever is installed; see plada-edge models), a local "
        ".pt/.pth/.safetensors, or a cached torchvision weight name.",
    )
    model_size: int | None = opt(
        None,
        "Student input pixels (unset: the teacher's view). ImageNet-initialised students want 64+.",
        name="--size",
        alias="--model-size",
    )
    expand: int = opt(0, "FAISS label expansion: neighbours per payload image (0 = off).")
    expand_weight: float = opt(0.5, "Loss weight of expanded and self-labelled images.")
    embedder: str | None = opt(None, "Embedder of the pack index used by --expand.")
    self_train: float = opt(
        0.0,
        "Zero-byte self-training: after training, label up to this many x k more pool images the student is sure "
        "of, and retrain (0 = off).",
    )
    self_train_confidence: float = opt(0.9, "Softmax confidence a self-labelled image needs.")
    device: str = opt("auto", "Where torch runs: " + DEVICE_HELP)
    precision: str = opt(
        "auto",
        "Training precision: auto (bf16, or fp16 with loss scaling, on CUDA; fp32 elsewhere), fp32, bf16 or fp16.",
        choices=PRECISIONS,
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30))

    def __post_init__(self) -> None:
        _check(isinstance(self.arch, str) and bool(self.arch), f"arch must be a model name, got {self.arch!r}")
        _check(
            self.model_size is None or _model_size_ok(self.model_size),
            f"model_size must be 8..1024 pixels, got {self.model_size!r}",
        )
        _check(_whole(self.expand) and self.expand >= 0, f"expand must be >= 0, got {self.expand!r}")
        _check(
            _finite(self.expand_weight) and self.expand_weight > 0,
            f"expand_weight must be a positive number, got {self.expand_weight!r}",
        )
        _check(
            _finite(self.self_train) and 0 <= self.self_train <= 20,
            f"self_train must be in [0, 20] (extra images per payload image), got {self.self_train!r}",
        )
        _check(
            _finite(self.self_train_confidence) and 0 < self.self_train_confidence < 1,
            f"self_train_confidence must be in (0, 1), got {self.self_train_confidence!r}",
        )
        _check_device(self)

    @classmethod
    def from_options(cls, **options: Any) -> StudentConfig:
        return _nested(cls, options)


@dataclass(frozen=True)
class ScoreConfig:
    """How the pack streams through the teacher (plada_edge.server.scoring)."""

    batch_size: int = opt(256, "Images per onnxruntime (or torch) call.")
    chunk: int = opt(16384, "Images per checkpointed chunk (a multiple of --batch-size).")
    threads: int = opt(0, "onnxruntime intra-op threads (0 = all CPUs).")
    keep_logits: bool = opt(
        False, "Also store all logits (N x C float32: large).", flag="--keep-logits/--no-keep-logits"
    )
    engine: str = opt(
        "local",
        "local: onnxruntime here (torch on a GPU onnxruntime cannot reach); torch: the teacher's graph run by torch "
        'on --device; ray: spread the chunks over a Ray cluster (pip install "plada-edge[ray]").',
        choices=SCORE_ENGINES,
    )
    address: str | None = opt(None, "Ray cluster address (auto, ray://host:port); default: a local Ray runtime.")
    workers: int = opt(0, "Ray actors (0 = one per CPU of the cluster).")
    gpus_per_worker: float = opt(0.0, "Ray: GPUs each actor reserves (0 = CPU).")
    device: str = opt(
        "auto",
        "auto: the best installed onnxruntime provider (a GPU through torch when onnxruntime has none); cpu: CPU "
        "only; cuda[:N]: that GPU; mps: Apple's GPU (torch engine).",
    )
    providers: str | None = opt(
        None,
        "onnxruntime execution providers, best first, e.g. cuda,cpu or tensorrt,cuda,cpu (default: the best "
        "installed: TensorRT, CUDA, then CPU; only CPU with --device cpu).",
    )
    checkpoint: str | None = opt(
        None,
        "torch engine: the teacher folder or teacher.pt the .onnx was exported from (default: found beside it, "
        "checked by its SHA-256).",
    )
    precision: str = opt(
        "fp32",
        "torch engine: fp32 (agrees with onnxruntime), or bf16 / fp16 autocast on CUDA.",
        choices=SCORE_PRECISIONS,
    )

    def __post_init__(self) -> None:
        _check(_whole(self.batch_size) and self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size!r}")
        _check(_whole(self.chunk) and self.chunk >= 1, f"chunk must be >= 1, got {self.chunk!r}")
        _check(
            self.chunk % self.batch_size == 0,
            f"chunk ({self.chunk}) must be a multiple of batch_size ({self.batch_size})",
        )
        _check(_whole(self.threads) and self.threads >= 0, f"threads must be >= 0, got {self.threads!r}")
        _check(self.engine in SCORE_ENGINES, f"engine must be one of {', '.join(SCORE_ENGINES)}, got {self.engine!r}")
        _check(
            self.precision in SCORE_PRECISIONS,
            f"precision must be one of {', '.join(SCORE_PRECISIONS)}, got {self.precision!r}",
        )
        _check(_whole(self.workers) and self.workers >= 0, f"workers must be >= 0, got {self.workers!r}")
        _check(
            _finite(self.gpus_per_worker) and self.gpus_per_worker >= 0,
            f"gpus_per_worker must be >= 0, got {self.gpus_per_worker!r}",
        )
        object.__setattr__(self, "device", check_device_spec(self.device))


def _check_device(config: Any) -> None:
    object.__setattr__(config, "device", check_device_spec(config.device))
    _check(
        config.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}"
    )


def with_options(config: C | None, cls: type[C], options: dict[str, Any]) -> C:
    """``config`` (or the defaults) with flat keyword ``options`` applied; unknown names are refused."""
    base = cls() if config is None else config
    if not isinstance(base, cls):
        raise ConfigError(f"expected a {cls.__name__}, got {type(base).__name__}")
    if not options:
        return base
    if any(f.name == "train" for f in fields(cls)):
        return _nested(cls, {**_flat(base), **options})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(known)}")
    return replace(base, **options)


def _flat(config: Any) -> dict[str, Any]:
    d = asdict(config)
    return {**{k: v for k, v in d.items() if k != "train"}, **d.get("train", {})}


def _nested(cls: type[C], options: dict[str, Any]) -> C:
    """Split flat options into the model's own fields and its TrainConfig's, with the class's defaults."""
    own = {f.name for f in fields(cls)} - {"train"}
    train_names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - own - train_names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(own | train_names)}")
    default_train = cls().train  # type: ignore[attr-defined]
    train = replace(default_train, **{k: v for k, v in options.items() if k in train_names})
    return cls(**{k: v for k, v in options.items() if k in own}, train=train)  # type: ignore[call-arg]


def flat_defaults(cls: type) -> dict[str, Any]:
    """Every option of ``cls`` with its default, flattened (the CLI's and tasks.toml's view)."""
    return _flat(cls())


def flat_options(config: Any) -> dict[str, Any]:
    """Every option of a config object, flattened (its TrainConfig's fields beside its own)."""
    return _flat(config)


__all__ = [
    "SelectionConfig",
    "TrainConfig",
    "TeacherConfig",
    "StudentConfig",
    "ScoreConfig",
    "with_options",
    "flat_defaults",
    "flat_options",
    "parse_spread",
    "parse_target_power",
    "AUTO_SPREAD",
    "QUOTAS",
    "SCORE_ENGINES",
    "SCORE_PRECISIONS",
    "QUOTA_IMBALANCE",
    "NEAREST_ANCHORS",
    "NEAREST_K",
    "NEAR_COPY_QUANTILE",
    "NEAR_COPY_RATIO",
    "TEACHER_STRATEGY",
    "TARGET_POWER",
    "VIEW_STRATEGY",
]
