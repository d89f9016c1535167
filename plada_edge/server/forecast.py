"""Server step 4c (ours): what a payload will give on the device, predicted before it ships (issue 35).

The device's student is judged on the target's test split, which neither it nor its teacher ever saw. The
forecast rebuilds that situation inside the training split, once per held-out fold. Target.holdout_folds()
sets aside HOLDOUT_SHARE of each class at a time, drawn as the test split was (whole icons when the target
records its split groups), and each fold's **blind teacher** (plada_edge.server.teacher) is the teacher's
recipe trained without it. ``blind_scores`` scores the pool with each (once, cached beside the teacher's
scores); a fold's trial payload is the same plan at the same budget picked from its blind scores, so its blind
teacher selects and labels it; the device's own student recipe trains on it (the pretrained linear probe in
seconds; resnet18 from scratch in about a minute on 2 CPU cores) and the fold's held-out images judge it.
Pooled over the folds, the trial students' accuracy as a share of their blind teachers', times the teacher's
test accuracy, is the estimate. Its 95 % interval is Wilson's over the held-out images (a bootstrap over the
images' groups where wider: an icon drawn at five sizes is one draw of the task, not five), widened with several
folds to a prediction interval from the folds' own estimates: teachers of one recipe, trained on slightly
different images, label the pool differently and transfer unequally, and the device's teacher is one more
such draw. No test image is read.
``smallest_for`` searches the budget a goal needs, by bisection over the number of images.

Why blind: on the icon targets a student taught by the teacher, which saw the held-out images, scores 12-21
points higher on them than one the blind twin taught, so a forecast judged on them overshoots by as much.
Why folds: one fold of a small target is a hundred-odd images (116 on tango), whose sampling error alone is
several points; every fold judged once holds out the whole training split (docs/results.md, "holdouts").
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import HOLDOUT_BOOTSTRAP, StudentConfig
from ..core.errors import ConfigError, ScoresError, TargetError
from ..core.recipes import student_options
from ..core.targets import Target
from ..core.view import ViewSpec, as_nhwc3, torch_view


@dataclass(frozen=True)
class Forecast:
    """A trial student's accuracy on held-out target images: the estimate of the device's test accuracy."""

    accuracy: float  # the estimate of the device student's test accuracy
    # 95 %: Wilson's over the held-out images (a bootstrap over their icons where wider), scaled as the estimate
    # is, widened with several folds to where one more teacher's student may land (the folds' spread: teachers of
    # one recipe transfer unequally)
    low: float
    high: float
    images: int  # held-out images it was judged on
    held_out: float  # its accuracy on them, as is
    teacher_held_out: float | None  # the blind teacher's (None: not recorded)
    trained_on: int
    recipe: str
    arch: str
    seconds: float
    folds: int = 1  # held-out folds pooled, each with its blind teacher and trial student
    fold_estimates: tuple[float, ...] = ()  # each fold's estimate on its own

    def to_dict(self) -> dict:
        return asdict(self)

    def header(self) -> dict:
        """What the payload's header carries of it (v3 field 2): accuracy, interval, held-out images."""
        return {"accuracy": round(self.accuracy, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "images": self.images}  # fmt: skip

    def __str__(self) -> str:
        folds = f" in {self.folds} folds" if self.folds > 1 else ""
        return f"{self.accuracy:.3f} ({self.low:.3f}-{self.high:.3f}, {self.images} held-out images{folds})"


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``correct`` / ``n``."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def group_resamples(columns: np.ndarray, groups: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A bootstrap over ``groups``: ``count`` draws of as many groups, with replacement, each the sums of
    ``columns`` ((images, m), a row per image) over the groups it drew; (count, m)."""
    ids, member = np.unique(np.asarray(groups), return_inverse=True)
    per_group = np.stack([np.bincount(member, c, len(ids)) for c in np.asarray(columns, float).T], 1)
    return per_group[np.random.default_rng(seed).integers(0, len(ids), (count, len(ids)))].sum(1)


def held_out_interval(right: np.ndarray, groups: np.ndarray | None = None, z: float = 1.96) -> tuple[float, float]:
    """The 95 % interval of the share of ``right`` (one bool per held-out image): Wilson's, widened where the
    images come in ``groups`` (an icon drawn at several sizes) to a bootstrap over the groups, since images of
    one icon are right or wrong together and count for less than as many independent ones."""
    right = np.asarray(right, bool)
    low, high = wilson(int(right.sum()), len(right), z)
    if groups is None or len(right) == 0:
        return low, high
    if len(np.unique(groups)) == len(right):  # one image a group: Wilson's already
        return low, high
    draws = group_resamples(np.stack([right, np.ones(len(right))], 1), groups, HOLDOUT_BOOTSTRAP)
    shares = draws[:, 0] / draws[:, 1]
    return min(low, float(np.quantile(shares, 0.025))), max(high, float(np.quantile(shares, 0.975)))


def held_out(target: Target, recorded: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The held-out training images, labels and groups (None where the target records none): what the teacher
    recorded, or Target.holdout()."""
    idx = np.asarray(recorded if recorded is not None else target.holdout(), np.int64)
    if not len(idx):
        raise TargetError(f"target {target.name} has no held-out training images to forecast with")
    if idx.max() >= len(target.y_train):
        raise TargetError(f"the teacher's held-out images do not fit target {target.name}: another target?")
    return as_nhwc3(target.x_train[idx]), target.y_train[idx], None if target.groups is None else target.groups[idx]


@dataclass(frozen=True)
class Trial:
    """One fold's trial payload: picked and labelled by that fold's blind teacher, whose scores ``blind``
    record the held-out images it never saw and its accuracy on them."""

    blind: Any  # Scores of the fold's blind teacher
    indices: np.ndarray
    labels: np.ndarray
    soft: Any = None  # SoftLabels, as the device trains on them


def blind_scores(scores, pack, teacher=None, fold: int = 0, progress: bool | None = False):
    """The pool scored by the blind teacher of held-out ``fold`` of the teacher behind ``scores`` (blind_path of
    ``teacher``, the ONNX the scores came from, or of the path they recorded), cached in ``scores``' folder
    under blind_name(fold)."""
    from .scoring import Scores, score_pack
    from .teacher import blind_name, blind_path, onnx_metadata

    cache = Path(scores.path) / blind_name(fold)
    try:
        cached = Scores.open(cache, pack)
        if cached.meta.get("blind_of") == scores.meta.get("checkpoint_sha256"):
            return cached
    except ScoresError:
        pass
    onnx = teacher or scores.meta.get("teacher_path")
    twin = blind_path(onnx, fold) if onnx else None
    if twin is None or not twin.is_file():
        raise ConfigError(
            f"a forecast needs the teacher's blind twin for held-out fold {fold} "
            f"({twin or 'NAME.' + blind_name(fold) + '.onnx beside the teacher'}): train the teacher again (it "
            "resumes) and export it (plada-edge teacher export), and give its ONNX (--teacher)"
        )
    meta = onnx_metadata(twin)
    if meta.get("blind_of") != scores.meta.get("checkpoint_sha256"):
        raise ConfigError(f"{twin} is not a blind twin of the teacher these scores came from: export it again")
    previous = cache / "meta.json"
    if previous.is_file() and json.loads(previous.read_text()).get("teacher_sha256") != meta["sha256"]:
        import shutil

        shutil.rmtree(cache)  # an earlier teacher's blind scores; this one's (resumed if interrupted) replace them
    return score_pack(twin, pack, cache, progress=progress)


def blind_folds(scores, pack, target: Target, teacher=None, progress: bool | None = False) -> list:
    """Every held-out fold's blind scores (blind_scores), checked against the target's folds."""
    out = []
    for fold, held in enumerate(target.holdout_folds()):
        got = blind_scores(scores, pack, teacher, fold, progress)
        if (got.meta.get("target") or {}).get("holdout") != held.tolist():
            raise ConfigError(f"the blind teacher of fold {fold} held out other images than target {target.name}'s"
                              " fold: another target, or drawn under other rules? Train the teacher again")  # fmt: skip
        out.append(got)
    return out


def forecast(scores, trials: list[Trial], pack, target: Target, recipe: str = "auto", device: str = "auto",
             **student) -> Forecast:  # fmt: skip
    """Train the device's student recipe (``student`` overrides any option) on each fold's trial payload, as the
    device trains on a payload, and judge it on that fold's held-out training images; pooled over the folds,
    scaled by the teacher behind ``scores``."""
    from ..core.devices import resolve_device
    from ..core.train import TrainingRun, predict

    t0 = time.perf_counter()
    view = scores.meta.get("view")
    if view is None:
        raise ConfigError("these scores carry no view: the student's view is unknown, so no forecast")
    if not trials:
        raise ConfigError("a forecast needs at least one trial payload")
    spec = ViewSpec.from_dict(view)
    options = student_options(spec.gray, recipe, student)
    kind = options.pop("recipe")
    cfg = StudentConfig.from_options(**options)
    if cfg.model_size is not None:
        spec = replace(spec, model_size=cfg.model_size)
    run = TrainingRun(cfg.arch, len(scores.class_names), cfg.weights, cfg.train, resolve_device(device), cfg.precision)
    blind_correct: float | None = 0.0
    test = scores.meta.get("teacher_test_acc")
    per_fold, rights, groups = [], [], []
    for trial in trials:
        x, y, icons = held_out(target, (trial.blind.meta.get("target") or {}).get("holdout"))
        groups.append(icons)
        with tempfile.TemporaryDirectory(prefix="plada-forecast-") as work:
            model, _ = run.fit(
                torch_view(spec, input_size=pack.size), pack.gather(np.asarray(trial.indices)),
                np.asarray(trial.labels), work, {"forecast": True}, resume=False, progress=False,
                soft=None if trial.soft is None else (trial.soft.runner_up, trial.soft.confidence),
            )  # fmt: skip
        pred = predict(model, torch_view(spec, input_size=target.native_size), x, device=run.device).argmax(1)
        rights.append(pred == y)
        held = trial.blind.meta.get("teacher_holdout_acc")  # the blind teacher on the images it never saw
        blind_correct = None if held is None or blind_correct is None else blind_correct + held * len(y)
        per_fold.append(min(1.0, float(rights[-1].mean()) * _scale(test, held)))
    right = np.concatenate(rights)
    judged = len(right)
    low, high = held_out_interval(right, None if groups[0] is None else np.concatenate(groups))
    held = blind_correct / judged if blind_correct is not None else None
    share = int(right.sum()) / judged
    estimate, low, high = (min(1.0, v * _scale(test, held)) for v in (share, low, high))
    if len(per_fold) > 1:  # where the device's own teacher may land among its recipe's teachers
        reach = _prediction_reach(per_fold)
        low, high = max(0.0, min(low, estimate - reach)), min(1.0, max(high, estimate + reach))
    seconds = time.perf_counter() - t0
    trained_on = int(np.mean([len(t.labels) for t in trials]))
    return Forecast(estimate, low, high, judged, share, held, trained_on, kind, cfg.arch, seconds, len(trials),
                    tuple(per_fold))  # fmt: skip


def _scale(test: float | None, held: float | None) -> float:
    """A held-out accuracy to the test split's: the teacher's test accuracy over the blind teacher's held-out one
    (the held-out images' difficulty, measured on the teacher); 1 where either is unknown."""
    return test / held if test and held else 1.0


_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)  # Student's t, 97.5 %, 1-9 d.o.f.


def _prediction_reach(estimates: list[float]) -> float:
    """Half the 95 % prediction interval of one more draw beside ``estimates`` (t, sample sd, sqrt(1 + 1/k))."""
    k = len(estimates)
    return _T975[min(k - 1, len(_T975)) - 1] * float(np.std(estimates, ddof=1)) * math.sqrt(1 + 1 / k)


def smallest_for(
    goal: float, predict_at, lo: int, hi: int, steps: int = 8, resolution: float = 1.1
) -> tuple[int, list[tuple[int, float]]]:
    """The smallest count of images in [lo, hi] whose ``predict_at(count)`` accuracy reaches ``goal``, found by
    bisection on a log scale in at most ``steps`` forecasts (accuracy is taken to grow with the count), stopping
    once the bracket is within ``resolution`` x (a forecast's few points of noise cannot tell closer sizes
    apart, and each step trains a student per fold). Returns that count (``hi`` when even it falls short) and
    every (count, accuracy) tried."""
    if not 1 <= lo <= hi:
        raise ConfigError(f"no budget to search between {lo} and {hi} images")
    tried: list[tuple[int, float]] = []
    best = hi
    for _ in range(steps):
        if lo >= hi or (tried and hi <= lo * resolution):
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


__all__ = ["Forecast", "Trial", "blind_folds", "blind_scores", "forecast", "group_resamples", "held_out",
           "held_out_interval", "smallest_for", "wilson"]  # fmt: skip
