"""Server step 4c (ours): what a payload will give on the device, predicted before it ships (issue 35).

The device's student is judged on the target's test split, which neither it nor its teacher ever saw. The
forecast rebuilds that situation inside the training split. Target.holdout() sets aside HOLDOUT_SHARE of each
class, drawn as the test split was (whole icons when the target records its split groups), and the **blind
teacher** (plada_edge.server.teacher) is the teacher's recipe trained without those images. ``blind_scores``
scores the pool with it (once, cached beside the teacher's scores); the trial payload is the same plan at the
same budget picked from them, so the blind teacher selects and labels it; the device's own student recipe
trains on it (the pretrained linear probe in seconds; resnet18 from scratch in about a minute on 2 CPU cores)
and the held-out images judge it. Its accuracy there, as a share of the blind teacher's, times the teacher's
test accuracy is the estimate, with a 95 % interval from the held-out count (Wilson). No test image is read.
``smallest_for`` searches the budget a goal needs, by bisection over the number of images.

Why blind: on the icon targets a student taught by the teacher, which saw the held-out images, scores 12-21
points higher on them than one the blind twin taught, so a forecast judged on them overshoots by as much
(docs/results.md, "holdouts").
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..core.config import StudentConfig
from ..core.errors import ConfigError, ScoresError, TargetError
from ..core.recipes import student_options
from ..core.targets import Target
from ..core.view import ViewSpec, as_nhwc3, torch_view


@dataclass(frozen=True)
class Forecast:
    """A trial student's accuracy on held-out target images: the estimate of the device's test accuracy."""

    accuracy: float  # the estimate of the device student's test accuracy
    low: float  # 95 % Wilson interval over the held-out images, scaled as the estimate is
    high: float
    images: int  # held-out images it was judged on
    held_out: float  # its accuracy on them, as is
    teacher_held_out: float | None  # the blind teacher's (None: not recorded)
    trained_on: int
    recipe: str
    arch: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def header(self) -> dict:
        """What the payload's header carries of it (v3 field 2): accuracy, interval, held-out images."""
        return {"accuracy": round(self.accuracy, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "images": self.images}  # fmt: skip

    def __str__(self) -> str:
        return f"{self.accuracy:.3f} ({self.low:.3f}-{self.high:.3f}, {self.images} held-out images)"


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``correct`` / ``n``."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def held_out(target: Target, recorded: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out training images and labels (what the teacher recorded, or Target.holdout())."""
    idx = np.asarray(recorded if recorded is not None else target.holdout(), np.int64)
    if not len(idx):
        raise TargetError(f"target {target.name} has no held-out training images to forecast with")
    if idx.max() >= len(target.y_train):
        raise TargetError(f"the teacher's held-out images do not fit target {target.name}: another target?")
    return as_nhwc3(target.x_train[idx]), target.y_train[idx]


def blind_scores(scores, pack, teacher=None, progress: bool | None = False):
    """The pool scored by the blind twin of the teacher behind ``scores`` (blind_path of ``teacher``, the ONNX
    the scores came from, or of the path they recorded), cached in ``scores``' folder under ``blind``."""
    from .scoring import Scores, score_pack
    from .teacher import blind_path, onnx_metadata

    cache = Path(scores.path) / "blind"
    try:
        cached = Scores.open(cache, pack)
        if cached.meta.get("blind_of") == scores.meta.get("checkpoint_sha256"):
            return cached
    except ScoresError:
        pass
    onnx = teacher or scores.meta.get("teacher_path")
    twin = blind_path(onnx) if onnx else None
    if twin is None or not twin.is_file():
        raise ConfigError(
            f"a forecast needs the teacher's blind twin ({twin or 'NAME.blind.onnx beside the teacher'}): "
            "export the teacher again (plada-edge teacher export) and give its ONNX (--teacher)"
        )
    meta = onnx_metadata(twin)
    if meta.get("blind_of") != scores.meta.get("checkpoint_sha256"):
        raise ConfigError(f"{twin} is not the blind twin of the teacher these scores came from: export it again")
    previous = cache / "meta.json"
    if previous.is_file() and json.loads(previous.read_text()).get("teacher_sha256") != meta["sha256"]:
        import shutil

        shutil.rmtree(cache)  # an earlier teacher's blind scores; this one's (resumed if interrupted) replace them
    return score_pack(twin, pack, cache, progress=progress)


def forecast(
    scores,
    indices: np.ndarray,
    labels: np.ndarray,
    pack,
    target: Target,
    recipe: str = "auto",
    device: str = "auto",
    soft=None,
    **student,
) -> Forecast:
    """Train the device's student recipe (``student`` overrides any option) on the pack images ``indices`` with
    ``labels`` (and ``soft``, SoftLabels, as the device trains on them): a trial payload, picked from
    ``blind_scores`` for an honest estimate; judge it on the target's held-out training images."""
    from ..core.devices import resolve_device
    from ..core.train import TrainingRun, predict

    t0 = time.perf_counter()
    view = scores.meta.get("view")
    if view is None:
        raise ConfigError("these scores carry no view: the student's view is unknown, so no forecast")
    spec = ViewSpec.from_dict(view)
    options = student_options(spec.gray, recipe, student)
    kind = options.pop("recipe")
    cfg = StudentConfig.from_options(**options)
    if cfg.model_size is not None:
        spec = replace(spec, model_size=cfg.model_size)
    x, y = held_out(target, (scores.meta.get("target") or {}).get("holdout"))
    run = TrainingRun(cfg.arch, len(scores.class_names), cfg.weights, cfg.train, resolve_device(device), cfg.precision)
    with tempfile.TemporaryDirectory(prefix="plada-forecast-") as work:
        model, _ = run.fit(
            torch_view(spec, input_size=pack.size), pack.gather(np.asarray(indices)), np.asarray(labels), work,
            {"forecast": True}, resume=False, progress=False,
            soft=None if soft is None else (soft.runner_up, soft.confidence),
        )  # fmt: skip
    pred = predict(model, torch_view(spec, input_size=target.native_size), x, device=run.device).argmax(1)
    correct = int((pred == y).sum())
    low, high = wilson(correct, len(y))
    test, held = scores.meta.get("teacher_test_acc"), scores.meta.get("teacher_holdout_acc")
    scale = test / held if test and held else 1.0  # the held-out images' difficulty, measured on the teacher
    share = correct / len(y)
    estimate = [min(1.0, v * scale) for v in (share, low, high)]
    seconds = time.perf_counter() - t0
    return Forecast(*estimate, len(y), share, held, len(labels), kind, cfg.arch, seconds)


def smallest_for(goal: float, predict_at, lo: int, hi: int, steps: int = 8) -> tuple[int, list[tuple[int, float]]]:
    """The smallest count of images in [lo, hi] whose ``predict_at(count)`` accuracy reaches ``goal``, found by
    bisection on a log scale in at most ``steps`` forecasts (accuracy is taken to grow with the count). Returns
    that count (``hi`` when even it falls short) and every (count, accuracy) tried."""
    if not 1 <= lo <= hi:
        raise ConfigError(f"no budget to search between {lo} and {hi} images")
    tried: list[tuple[int, float]] = []
    best = hi
    for _ in range(steps):
        if lo >= hi:
            break
        mid = int(round(math.sqrt(lo * hi)))
        mid = min(max(mid, lo), hi - 1) if hi - lo > 1 else lo
        acc = predict_at(mid)
        tried.append((mid, acc))
        if acc >= goal:
            best, hi = mid, mid
        else:
            lo = mid + 1
    return best, tried


__all__ = ["Forecast", "blind_scores", "forecast", "held_out", "smallest_for", "wilson"]
