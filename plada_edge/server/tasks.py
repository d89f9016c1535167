"""``plada-edge build tasks.toml``: run the server pipeline for every task, cached by content.

A task file (TOML) names a cache directory, a default reference pack and one table per task:

    [server]
    cache = "runs/server"          # where teachers, scores and payloads are kept
    reference = "data/offline-mix"
    signing_key = "server.key"     # optional: sign every payload (plada-edge keys generate); or $PLADA_EDGE_SIGNING_KEY
    statements = ["new.key.rotation.json"]   # optional: key rotations and revocations devices fetch (/v1/keys)
    index_ttl = "1h"               # how long the signed index (/v1/index) stays fresh (a duration)

    [tasks.fmnist]
    target = "fmnist"              # a path (.npz / ImageFolder) or a name under data/targets/
    arch = "resnet18"
    epochs = 10
    hflip = true
    keep = "1%"                    # or: count = 1000, or: max_bytes = "100KB"
    strategy = "energy"
    safety_net = true
    alpha = -0.2
    share = 0.5
    spread = "auto"                # or a number: random picks among the spread·m best (1 = strict)
    codec = "auto"
    expires = "30d"                # optional: devices refuse the payload after this (default never)
    # version = 7                  # optional: the release version (default: the last published one + 1)

Every stage is keyed by a SHA-256 of exactly what it depends on, so a rebuild redoes only what
changed: the teacher by (target data, model settings); its ONNX export by (teacher checkpoint,
pack image size); scores by (ONNX file, pack fingerprint); the payload by (scores, selection,
codec). Changing only ``keep`` re-selects from the cached scores: no training, no scoring.
The published list (``<cache>/tasks.json``) maps task names to payloads for the HTTP server.
A signed task is a release: a payload built anew gets the last published version + 1 (a cached one
keeps its own, unless it is older than what was published), so a device never has to go backwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import atomic
from ..core.config import KEEP, SelectionConfig, TeacherConfig, flat_defaults, flat_options, with_options
from ..core.errors import ConfigError
from ..core.locks import output_lock
from ..core.payload import read_payload
from ..core.recipes import RECIPE_FIELDS, RECIPES, TargetFacts, teacher_options
from ..core.reference import ReferencePack
from ..core.targets import Target, data_dir, load_target

_log = logging.getLogger(__name__)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6): the same parser, from PyPI
    import tomli as tomllib

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TEACHER_KEYS = tuple(flat_defaults(TeacherConfig))
SELECTION_KEYS = tuple(flat_defaults(SelectionConfig))
SELECT_KEYS = (*SELECTION_KEYS, "keep", "count", "max_bytes", "codec")
# every setting a task may give, with its default: the parameter objects' own defaults, except
# the options a recipe fills (None: left to the task's recipe, plada_edge.core.recipes)
DEFAULTS = {
    **{k: None if k in RECIPE_FIELDS else v for k, v in flat_defaults(TeacherConfig).items()},
    "recipe": "auto",
    **flat_defaults(SelectionConfig),
    "keep": None,
    "count": None,
    "max_bytes": None,
    "codec": "auto",
    "version": None,  # the release version (signed tasks: the last published one + 1)
    "forecast": False,  # predict the device's student accuracy (plada_edge.server.forecast): into the header and page
    "goal": None,  # or size the payload to a forecast: a share of the teacher's test accuracy (0.9) ...
    "goal_acc": None,  # ... or an accuracy (0.6)
    "expires": None,  # never, a duration (30d) or a date: devices refuse the payload after it
    "test_split": None,  # a one-folder target: the share of each class held out for testing
    "target_size": None,  # a folder target of mixed sizes: resized to this side (default 32)
}
PUBLISHED = "tasks.json"
INDEX_TTL = "1h"  # the signed index a server publishes is fresh this long (TUF's timestamp role, simplified)


def _strings(table: dict, key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[server] {key} must be a list of paths")
    return value


def _index_ttl(text) -> int:
    """[server] index_ttl as seconds: a duration (1h, 30m) of at most a year."""
    from ..core.config import parse_expiry

    seconds = parse_expiry(text, 0) if isinstance(text, str) else None
    if not seconds or seconds > 366 * 86400:
        raise ConfigError(f"[server] index_ttl must be a duration such as 1h or 30m, got {text!r}")
    return seconds


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode() if not isinstance(p, bytes) else p)
        h.update(b"\0")
    return h.hexdigest()


def target_hash(spec: str, base: Path) -> tuple[Path, str]:
    """Resolve a target spec and hash its content (every file of an ImageFolder)."""
    path = Path(spec) if Path(spec).is_absolute() else base / spec
    if not path.exists():
        named = data_dir() / "targets" / f"{spec}.npz"
        if not named.exists():
            raise FileNotFoundError(f"target {spec!r} not found (as {path} or {named})")
        path = named
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return path, _sha(*[(str(p.relative_to(path)), atomic.file_sha256(p)) for p in files])
    return path, atomic.file_sha256(path)


def teacher_config(task: dict, target: Target | None = None) -> TeacherConfig:
    """The task's teacher: its recipe (for ``target``) under its own settings; without a target, only checked."""
    given = {k: task[k] for k in TEACHER_KEYS if task[k] is not None}
    if target is None:
        if task["recipe"] not in RECIPES:
            raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {task['recipe']!r}")
        return TeacherConfig.from_options(**given)
    options = teacher_options(TargetFacts.of(target), task["recipe"], given)
    options.pop("recipe")
    return TeacherConfig.from_options(**options)


def _check_budget(task: dict) -> None:
    from ..core.codecs import list_codecs
    from .packing import parse_bytes
    from .selection import parse_keep

    given = [k for k in ("keep", "count", "max_bytes") if task[k] is not None]
    if len(given) > 1:
        raise ConfigError(f"give one of keep, count or max_bytes, not {' and '.join(given)}")
    if task["keep"] is not None:
        parse_keep(task["keep"])
    if task["count"] is not None and not (isinstance(task["count"], int) and task["count"] >= 1):
        raise ConfigError(f"count must be a whole number >= 1, got {task['count']!r}")
    if task["max_bytes"] is not None:
        parse_bytes(task["max_bytes"])
    version = task["version"]
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ConfigError(f"version must be a whole number >= 1, got {version!r}")
    if task["expires"] is not None:
        from ..core.config import parse_expiry

        parse_expiry(task["expires"], time.time())
    if task["codec"] != "auto" and task["codec"] not in list_codecs():
        raise ConfigError(f"unknown codec {task['codec']!r}; available: {', '.join(list_codecs())}, auto")


def _pictures(scores, pack, payload, stem: Path, log) -> dict:
    """The task's contact sheet and label histogram for the served page; a missing plotting stack skips them."""
    try:
        from .pages import draw_task_pictures

        return draw_task_pictures(scores, pack, payload, stem)
    except ImportError as exc:  # matplotlib is an optional extra ([data])
        log(f"no pictures for the page ({exc}); pip install matplotlib")
        return {}


def load_task_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"task file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a task file (tasks.toml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a readable task file (not UTF-8 text; expected TOML)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not a readable task file (not valid TOML: {exc})") from None
    tasks = cfg.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"{path}: no [tasks.NAME] tables")
    server = cfg.get("server", {})
    base = path.parent
    key = server.get("signing_key") or os.environ.get("PLADA_EDGE_SIGNING_KEY")
    if key is not None and not isinstance(key, str):
        raise ConfigError(f"{path}: [server] signing_key must be a path")
    out = {
        "cache": base / server.get("cache", "plada-cache"),
        "tasks": {},
        "base": base,
        "signing_key": (base / key if not Path(key).is_absolute() else Path(key)) if key else None,
        "statements": [base / p if not Path(p).is_absolute() else Path(p) for p in _strings(server, "statements")],
        "index_ttl": _index_ttl(server.get("index_ttl", INDEX_TTL)),
    }
    for name, t in tasks.items():
        if not TASK_NAME.match(name):
            raise ConfigError(f"task name {name!r} must match {TASK_NAME.pattern}")
        if "budget" in t:  # max_bytes' old name ("budget" means images now, as the paper's K)
            if "max_bytes" in t:
                raise ConfigError(f"task {name}: give max_bytes once (budget is its old name)")
            t = {**{k: v for k, v in t.items() if k != "budget"}, "max_bytes": t["budget"]}
        unknown = set(t) - set(DEFAULTS) - {"target", "reference", "task", "teacher"}
        if unknown:
            raise ConfigError(f"task {name}: unknown settings {sorted(unknown)}")
        if "target" not in t and "teacher" not in t:
            raise ConfigError(f"task {name}: give 'target' (train a teacher) or 'teacher' (an imported .onnx)")
        if "teacher" in t:
            t = {**t, "teacher": str(base / t["teacher"]) if not Path(t["teacher"]).is_absolute() else t["teacher"]}
        ref = t.get("reference", server.get("reference"))
        if not ref:
            raise ConfigError(f"task {name}: no reference pack (set [server] reference or the task's reference)")
        full = {**DEFAULTS, **t, "reference": str(base / ref) if not Path(ref).is_absolute() else ref}
        if full["keep"] is None and full["count"] is None and full["max_bytes"] is None:
            full["keep"] = KEEP
        try:  # every setting is checked here, before any task trains or scores
            teacher_config(full)  # the recipe is applied once the target is loaded
            full["selection_config"] = with_options(None, SelectionConfig, {k: full[k] for k in SELECTION_KEYS})
            _check_budget(full)
        except ConfigError as exc:
            raise ConfigError(f"task {name}: {exc}") from None
        out["tasks"][name] = full
    return out


def build_tasks(
    task_file: str | os.PathLike,
    only: list[str] | None = None,
    progress: bool | None = None,
    device: str | None = None,
    log=_log.info,
) -> dict:
    """Build (or reuse) every task's teacher, ONNX, scores and payload; publish the list."""
    from ..core.keys import SigningKey

    cfg = load_task_file(task_file)
    cache: Path = cfg["cache"]
    signer = SigningKey(cfg["signing_key"]) if cfg["signing_key"] else None
    with output_lock(cache, cache.parent / f".{cache.name}.lock"):  # one builder per cache
        report, published = {}, {}
        old = cache / PUBLISHED
        previous = json.loads(old.read_text()) if old.exists() else {}
        for name, t in cfg["tasks"].items():
            if only and name not in only:
                continue
            task = _TaskBuild(name, t, cache, ReferencePack.open(t["reference"]), device or t["device"], progress, log)
            onnx, target = task.teacher(cfg["base"])
            scores, skey = task.scores(onnx)
            payload, ppath = task.payload(scores, skey, target, signer, previous.get(name))
            pictures = _pictures(scores, task.pack, payload, ppath.with_suffix(""), log)
            published[name] = _entry(cache, payload, ppath, pictures)
            report[name] = {"steps": task.steps, **published[name]}
        if only:  # keep the tasks this run did not touch
            published = {**previous, **published}
        atomic.write_json(old, published)
    return report


@dataclass
class _TaskBuild:
    """One task's steps, each cached in ``cache`` by the hash of what it depends on; ``steps`` says which ran."""

    name: str
    t: dict
    cache: Path
    pack: ReferencePack
    device: str
    progress: bool | None
    log: Any
    steps: dict = field(default_factory=dict)

    def teacher(self, base: Path) -> tuple[Path, Target | None]:
        """The teacher's ONNX: given in the task, or trained and exported (cached by target and settings)."""
        from .teacher import export_onnx, onnx_metadata, train_teacher

        t, pack = self.t, self.pack
        if t.get("teacher"):  # an imported (or separately exported) teacher: nothing to train
            onnx = Path(t["teacher"])
            if onnx_metadata(onnx)["input_size"] != pack.size:
                raise ConfigError(
                    f"task {self.name}: {onnx} reads {onnx_metadata(onnx)['input_size']} px images, "
                    f"the pack holds {pack.size} px"
                )
            self.steps["teacher"] = self.steps["onnx"] = "given"
            return onnx, None
        tpath, thash = target_hash(t["target"], base)
        target = load_target(tpath, test_split=t["test_split"], size=t["target_size"])
        tconfig = teacher_config(t, target)
        # where a teacher trains does not change what it is: the device is left out of the cache key
        tkey = _sha(
            "teacher",
            thash,
            {k: v for k, v in flat_options(tconfig).items() if k != "device"},
            *([t["test_split"], t["target_size"]] if t["test_split"] or t["target_size"] else []),
        )
        tdir = self.cache / "teachers" / tkey
        if (tdir / "teacher.pt").exists():
            self.steps["teacher"] = "cached"
        else:
            self.log(f"[{self.name}] training teacher {tconfig.arch}")
            train_teacher(target, tdir, tconfig, progress=self.progress, device=self.device)
            self.steps["teacher"] = "built"
        onnx = self.cache / "onnx" / f"{_sha('onnx', atomic.file_sha256(tdir / 'teacher.pt'), pack.size)}.onnx"
        if onnx.exists():
            self.steps["onnx"] = "cached"
        else:
            export_onnx(tdir, onnx, input_size=pack.size)
            self.steps["onnx"] = "built"
        return onnx, target

    def scores(self, onnx: Path):
        """The pack's scores under this teacher (cached by the ONNX file and the pack)."""
        from .scoring import Scores, score_pack

        skey = _sha("scores", atomic.file_sha256(onnx), self.pack.fingerprint)
        sdir = self.cache / "scores" / skey
        try:
            scores = Scores.open(sdir, self.pack)
            self.steps["scores"] = "cached"
        except ValueError:
            self.log(f"[{self.name}] scoring {self.pack.n:,} images")
            scores = score_pack(onnx, self.pack, sdir, progress=self.progress, device=self.device)
            self.steps["scores"] = "built"
        return scores, skey

    def payload(self, scores, skey: str, target: Target | None, signer, published: dict | None):
        """The payload (cached by the scores, the selection options, the task name, the signer and the expiry
        asked for). A signed one is a release: built anew, it is the last ``published`` version + 1; cached, it is
        kept only while it is unexpired and not older than what was published."""
        from .packing import make_payload

        t = self.t
        signed_by = signer.public.hex() if signer else None
        release_keys = {k: t[k] for k in ("version", "expires", "forecast", "goal", "goal_acc") if t[k]}
        pkey = _sha(
            "payload",
            skey,
            {k: t[k] for k in SELECT_KEYS},
            t.get("task", self.name),
            *([signed_by] if signer else []),
            *([release_keys] if release_keys else []),
        )
        ppath = self.cache / "payloads" / f"{pkey}.plada"
        last = (published or {}).get("version")
        if ppath.exists():
            cached = read_payload(ppath)
            release = cached.header.get("release") or {}
            fresh = not release.get("expires") or release["expires"] > time.time()
            if fresh and (last is None or (release.get("version") or 0) >= last):
                self.steps["payload"] = "cached"
                return cached, ppath
        version = t["version"] or ((last + 1) if last and signer else None)
        predicts = bool(t["forecast"] or t["goal"] or t["goal_acc"])
        payload, _, _ = make_payload(
            scores,
            ppath,
            t["selection_config"],
            keep=t["keep"],
            count=t["count"],
            max_bytes=t["max_bytes"],
            codec=t["codec"],
            task=t.get("task", self.name),
            signer=signer,
            target_counts=None if target is None else target.class_counts(),
            version=version,
            expires=t["expires"],
            forecast=t["forecast"],
            goal=t["goal"],
            goal_acc=t["goal_acc"],
            pack=self.pack if predicts else None,
            target=target if predicts else None,
        )
        self.steps["payload"] = "built"
        return payload, ppath


def _entry(cache: Path, payload, ppath: Path, pictures: dict) -> dict:
    """A task's line in the published list (what GET /v1/tasks serves)."""
    return {
        "payload": str(ppath.relative_to(cache)),
        "sha256": payload.sha256,
        "bytes": payload.total_bytes,
        "k": payload.k,
        "n": payload.n,
        "classes": payload.num_classes,
        "codec": payload.header["codec"],
        "pack_fingerprint": payload.fingerprint,
        "teacher_test_acc": (payload.header.get("teacher") or {}).get("test_acc"),
        "signed_by": payload.signer_id,
        "keep": payload.k / payload.n,
        "version": (payload.header.get("release") or {}).get("version"),
        "expires": (payload.header.get("release") or {}).get("expires"),
        "forecast": payload.header.get("forecast"),
        **{kind: str((ppath.parent / f).relative_to(cache)) for kind, f in pictures.items()},
    }
