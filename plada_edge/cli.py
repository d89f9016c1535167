"""The ``plada-edge`` command line: a thin Typer layer, one library call per command.

Server side: teacher / score / select / pack / build / serve / keys. Device side: learn / evaluate / predict /
trust. Links: packets / assemble. Shared: reference, inspect, doctor. Every command has ``--help``; reporting
commands take ``--json``.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from . import __version__
from .cli_options import config_options
from .core.config import KEEP, RESIZE_METHODS, STORES, ScoreConfig, SelectionConfig, StudentConfig, TeacherConfig
from .core.devices import DEVICE_HELP
from .core.errors import PladaError
from .core.recipes import RECIPES
from .demo import DEMO_TEACHERS

# Options that mirror a parameter object's field come from it (config_options: name, default, help, choices);
# the choices of the commands' own options are declared here, so --help lists them and a typo is refused at once.
Recipe = Literal[RECIPES]
Resize = Literal[RESIZE_METHODS]
Store = Literal[STORES]
Layout = Literal["auto", "nchw", "nhwc"]
DemoTarget = Literal[tuple(DEMO_TEACHERS)]

TRUST_STORE_OPTION = typer.Option(
    None,
    "--trust-store",
    envvar="PLADA_EDGE_TRUST_STORE",
    help="The device's trust store (default ~/.local/state/plada-edge/trust.json).",
)
TEST_SPLIT_OPTION = typer.Option(
    None,
    "--test-split",
    help="For a target that is one folder of class folders (or a CSV without a split column): "
    "hold out this share of each class as the test split (stratified, seeded).",
)
RECIPE_OPTION = typer.Option(
    "auto",
    "--recipe",
    help="auto: an ImageNet-pretrained model at 64 px for colour targets when weights are installed, "
    "else resnet18 from scratch at 32 px; scratch; pretrained. Fills only the options marked (recipe) "
    "that you leave unset (docs/results.md, 'Defaults, and why').",
)
TARGET_SIZE_OPTION = typer.Option(
    None, "--target-size", help="Side to which a folder target of mixed image sizes is resized (default 32)."
)


def _either(value, alias, name: str, old_name: str):
    """An option given by its name or by the hidden name it had before (one name per concept across commands)."""
    if value is not None and alias is not None:
        from .core.errors import ConfigError

        raise ConfigError(f"give {name} once ({old_name} is its old name)")
    return value if value is not None else alias


def _target(spec: str | None, test_split: float | None = None, size: int | None = None):
    """The Target a command's --target/--eval names, with the folder options applied (None when not given)."""
    from .core.targets import load_target

    return load_target(spec, test_split=test_split, size=size) if spec else None


DEVICE_OPTION = typer.Option(TeacherConfig().device, "--device", help="Where torch runs: " + DEVICE_HELP)
ORT_DEVICE_OPTION = typer.Option(
    "auto", "--device", help="auto: the best installed onnxruntime provider; cpu; cuda[:N]."
)
PROVIDERS_OPTION = typer.Option(
    None,
    "--providers",
    help="onnxruntime execution providers, best first, e.g. cuda,cpu or tensorrt,cuda,cpu "
    "(default: the best installed: TensorRT, CUDA, then CPU; only CPU with --device cpu).",
)


class _UsageLine(UsageError):
    """A usage error as the rest of the CLI reports bad input: one 'error:' line, exit 2."""

    def show(self, file=None) -> None:
        where = f" (see '{self.ctx.command_path} -h')" if self.ctx is not None else ""
        typer.echo(f"error: {self.format_message()}{where}", err=True)


class _OneLineErrors(TyperGroup):
    """Parsing errors (unknown option, bad choice, missing argument) print as one line, not usage + box."""

    def make_context(self, *args, **kwargs):
        with _usage_in_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _usage_in_one_line():
            return super().invoke(ctx)


@contextmanager
def _usage_in_one_line():
    try:
        yield
    except (NoArgsIsHelpError, _UsageLine):  # help wanted, or already one line
        raise
    except UsageError as exc:
        message = exc.format_message().replace("Value error, ", "")  # typer's validator prefix
        raise _UsageLine(message, exc.ctx) from None


app = typer.Typer(
    cls=_OneLineErrors,
    name="plada-edge",
    help="PLADA: ship an image-classification task as a tiny (index, label) payload over a "
    "reference set every device already stores (arXiv 2602.23358).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # help text is plain: [tasks.NAME] and plada-edge[ray] print as written
)


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _clean_errors(fn):
    """Bad input (PladaError) and file problems (OSError) become one 'error:' line and exit code 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PladaError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # "PATH: Is a directory", not "[Errno 21] Is a directory: 'PATH'"
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


reference_app = typer.Typer(
    rich_markup_mode=None, help="Reference packs: the unlabeled image set every device stores.", no_args_is_help=True
)
app.add_typer(reference_app, name="reference")


def _print_pack(info: dict) -> None:
    (h, w), mib = info["size"][:2], info["bytes"] / 2**20
    typer.echo(f"{info['path']}: {info['n']:,} images of {h}x{w} RGB, {mib:,.1f} MiB")
    typer.echo(f"fingerprint {info['fingerprint']}")
    for s in info["sources"]:
        span = f"[{s['start']:>9,} .. {s['stop']:>9,})"
        typer.echo(f"  {span}  {s['name']:<20} {s['kind']:<7} {s['count']:>9,} kept  {s['skipped']:>6,} skipped")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"plada-edge {__version__}")
        raise typer.Exit()


class _LogLine(logging.Formatter):
    """'note: ...' / 'warning: ...' on stderr: the library's logging, read by a person."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "note" if record.levelno < logging.WARNING else record.levelname.lower()
        return f"{kind}: {record.getMessage()}"


def _setup_logging(quiet: bool, verbose: bool) -> None:
    logger = logging.getLogger("plada_edge")
    logger.handlers[:] = []
    handler = logging.StreamHandler()  # stderr: stdout is for results
    handler.setFormatter(_LogLine())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    # the API's warnings.warn, as one 'warning:' line like the log's (shown under --quiet too)
    warnings.showwarning = lambda message, *_args, **_kw: typer.echo(f"warning: {message}", err=True)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also debug notes on stderr."),
) -> None:
    """PLADA: ship a task as pseudo-labels over a shared reference set."""
    _setup_logging(quiet, verbose)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Report the kernel backend (native or numpy), SIMD level, threads, package versions, GPUs and providers."""
    from .core.doctor import doctor as run_doctor

    report = run_doctor()
    if as_json:
        _print_json(report)
        return
    typer.echo(f"plada-edge {report['plada_edge']}  (Python {report['python']}, {report['platform']})")
    kernels = report["kernels"]
    if kernels == "native":
        typer.echo(f"kernels   native, SIMD {report['simd']} (available: {', '.join(report['simd_available'])})")
    else:
        typer.echo(f"kernels   numpy twins (native not loaded: {report['native_load_error']})")
    typer.echo(f"threads   {report['threads']}")
    for name, ver in report["packages"].items():
        typer.echo(f"{name:<12}{ver or 'not installed'}")
    dev = report["devices"]
    for gpu in dev["gpus"]:
        about = f"{gpu['name']}, {gpu['memory_gib']} GiB, compute {gpu['compute_capability']}"
        typer.echo(f"gpu {gpu['index']}     {about}")
    if not dev["gpus"]:
        typer.echo("gpus      none visible to torch" + (" (Apple MPS available)" if dev["mps"] else ""))
    cudnn = f", cuDNN {dev['cudnn']}" if dev["cudnn"] else ""
    typer.echo(f"cuda      {dev['cuda'] or 'not in this torch build'}{cudnn}")
    typer.echo(f"providers {', '.join(dev['onnxruntime_providers']) or 'onnxruntime not installed'}")
    typer.echo(f"--device auto picks {dev['auto']}")


@reference_app.command("build")
@_clean_errors
def reference_build(
    sources: list[str] = typer.Argument(
        ..., help="Folders, .npy, .npz:KEY or IDX files, in index order; NAME=PATH names one."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Pack directory to create."),
    size: int = typer.Option(32, help="Side of the square RGB images, in pixels."),
    resize: Resize = typer.Option(
        "crop", help="crop: shorter side to SIZE, then center crop. pad: fit inside, pad with white."
    ),
    workers: int = typer.Option(0, help="Decoding processes (0 = one per CPU)."),
    max_pixels: int = typer.Option(4096 * 4096, help="Skip images with more pixels than this."),
    force: bool = typer.Option(False, "--force", help="Replace an existing pack at OUT."),
    store: Store = typer.Option(
        "raw",
        help="raw (memory-mapped pixels; fastest) or jpeg / webp (each image encoded: "
        "several times smaller, decoded only when gathered or scored).",
    ),
    quality: int = typer.Option(90, min=1, max=100, help="Encoder quality for --store jpeg / webp."),
    as_json: bool = typer.Option(False, "--json", help="Print the pack's info as JSON."),
) -> None:
    """Build a reference pack: decode, resize to SIZE x SIZE RGB, fingerprint. Same inputs → same bytes."""
    from .core.reference import build_pack

    pack = build_pack(
        sources,
        out,
        size=size,
        resize=resize,
        workers=workers,
        max_pixels=max_pixels,
        overwrite=force,
        store=store,
        quality=quality,
    )
    _print_json(pack.info()) if as_json else _print_pack(pack.info())


@reference_app.command("info")
@_clean_errors
def reference_info(
    pack: Path = typer.Argument(..., help="Pack directory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a pack's size, sources and fingerprint (reads the manifest only)."""
    from .core.reference import ReferencePack

    info = ReferencePack.open(pack).info()
    _print_json(info) if as_json else _print_pack(info)


@reference_app.command("verify")
@_clean_errors
def reference_verify(
    pack: Path = typer.Argument(..., help="Pack directory."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Recompute the fingerprint from every pixel; exit 2 if the pack was modified."""
    from .core.reference import ReferencePack

    fp = ReferencePack.open(pack).verify()
    _print_json({"ok": True, "fingerprint": fp}) if as_json else typer.echo(f"ok {fp}")


@app.command()
@_clean_errors
def audit(
    target: str = typer.Option(..., "--target", "-t", help="Target .npz / ImageFolder, or a name under data/targets/."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference pack directory."),
    examples: int = typer.Option(5, help="How many example pairs to show."),
    test_split: float | None = TEST_SPLIT_OPTION,
    target_size: int | None = TARGET_SIZE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Leakage audit: count target images with an exact (paper rule) or near duplicate in the pack."""
    from .core.reference import ReferencePack
    from .server.audit import audit_leakage

    report = audit_leakage(_target(target, test_split, target_size), ReferencePack.open(reference), examples=examples)
    if as_json:
        _print_json(report)
        return
    typer.echo(f"target {report['target']} vs {report['pack']} ({report['pack_n']:,} images)")
    for kind in ("exact", "near"):
        r = report[kind]
        typer.echo(f"{kind:<6} train {r['train']:>6,}  test {r['test']:>6,}   ({r['rule']})")
        for e in r["examples"]:
            typer.echo(f"       {e['split']}[{e['index']}] = pack[{e['pack_index']}] {e['origin']}")


keys_app = typer.Typer(
    rich_markup_mode=None, help="Ed25519 keys: servers sign payloads, devices trust a public key.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
@_clean_errors
def keys_generate(
    out: Path = typer.Option(..., "--out", "-o", help="Private key file to write (its public key goes to OUT.pub)."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Make a signing key pair: OUT stays on the server (pack --sign, tasks.toml signing_key);
    OUT.pub goes to devices (learn --trust)."""
    from .core.keys import generate_keys

    r = generate_keys(out, overwrite=force)
    _print_json(r) if as_json else typer.echo(
        f"key {r['key_id']}: private {r['private']} (mode 0600), public {r['public']}"
    )


@keys_app.command("rotate")
@_clean_errors
def keys_rotate(
    old: Path = typer.Argument(..., help="The private key being replaced."),
    out: Path = typer.Option(..., "--out", "-o", help="The new private key to write (OUT.pub and OUT.rotation.json)."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Make a new key and the old key's signed word that it replaces it (OUT.rotation.json): serve the statement
    (tasks.toml [server] statements) and sign with the new key; devices that trust the old key follow, and refuse
    the old key from then on."""
    from .core.keys import rotate_key

    r = rotate_key(old, out, overwrite=force)
    _print_json(r) if as_json else typer.echo(
        f"key {r['key_id']} replaces {r['old_key_id']}: private {r['private']}, statement {r['rotation']}"
    )


@keys_app.command("revoke")
@_clean_errors
def keys_revoke(
    key: Path = typer.Argument(..., help="The private key to revoke."),
    out: Path = typer.Option(..., "--out", "-o", help="The revocation statement to write (JSON)."),
    reason: str = typer.Option("", help="Why, for the record."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Write the key's own signed revocation: devices that receive it (served, or plada-edge trust add) refuse
    every payload that key signed."""
    from .core.keys import revoke_key

    r = revoke_key(key, out, reason)
    _print_json(r) if as_json else typer.echo(f"key {r['key_id']} revoked: {r['revocation']}")


trust_app = typer.Typer(
    rich_markup_mode=None,
    help="Device side: the trust store that keeps a device from going backwards.",
    no_args_is_help=True,
)
app.add_typer(trust_app, name="trust")


@trust_app.command("show")
@_clean_errors
def trust_show(
    trust_store: Path | None = TRUST_STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Per trusted root key: its keys (current, rotated, revoked) and the newest release accepted per task."""
    from .device.trust import TrustStore

    shown = TrustStore(trust_store).show()
    if as_json:
        return _print_json(shown)
    typer.echo(f"{shown['path']}: {len(shown['roots'])} trusted root(s)")
    for rid, root in shown["roots"].items():
        typer.echo(f"root {rid}")
        for kid, k in root["keys"].items():
            typer.echo(f"  key  {kid} {k['status']}")
        for name, t in root["tasks"].items():
            typer.echo(f"  task {name} version {t['version']}")


@trust_app.command("add")
@_clean_errors
def trust_add(
    statement: Path = typer.Argument(..., help="A key rotation or revocation statement (JSON)."),
    trust: str = typer.Option(..., "--trust", envvar="PLADA_EDGE_TRUST", help="The root public key it concerns."),
    trust_store: Path | None = TRUST_STORE_OPTION,
) -> None:
    """Take a key rotation or revocation into the trust store (learn URL fetches them from the server itself)."""
    from .core.keys import load_public_key, read_statement
    from .device.trust import TrustStore

    typer.echo(TrustStore(trust_store).apply(read_statement(statement), load_public_key(trust)))


teacher_app = typer.Typer(
    rich_markup_mode=None,
    help="Server side: train a teacher on the target task and export it to ONNX.",
    no_args_is_help=True,
)
app.add_typer(teacher_app, name="teacher")


TEACHER_OPTIONS = ("arch", "epochs", "size", "weights", "batch_size", "lr", "backbone_lr", "augment", "label_smoothing")
TEACHER_OPTIONS += ("seed", "hflip", "frame", "device", "precision")


@teacher_app.command("train")
@_clean_errors
@config_options(TeacherConfig, "options", TEACHER_OPTIONS, recipe=True)
def teacher_train(
    options: dict,
    target: str = typer.Option(..., "--target", "-t", help="Target .npz / ImageFolder, or a name under data/targets/."),
    recipe: Recipe = RECIPE_OPTION,
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (teacher.pt, metrics.json, checkpoint.pt)."),
    test_split: float | None = TEST_SPLIT_OPTION,
    target_size: int | None = TARGET_SIZE_OPTION,
    fresh: bool = typer.Option(False, "--fresh", help="Ignore an existing checkpoint instead of resuming it."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
) -> None:
    """Train a teacher (AdamW, cosine, light augmentation); resumes from OUT/checkpoint.pt."""
    from .server.teacher import train_teacher

    m = train_teacher(_target(target, test_split, target_size), out, recipe=recipe, resume=not fresh, **options)
    _print_json(m) if as_json else typer.echo(
        f"{m['arch']} ({m['recipe']} recipe, {m['size']} px) on {m['target']} ({m['device']}): test accuracy "
        + (f"{m['test_acc']:.4f}" if m["test_acc"] is not None else "n/a (no test split)")
        + f" → {out}"
    )


@teacher_app.command("export")
@_clean_errors
def teacher_export(
    teacher: Path = typer.Argument(..., help="Teacher directory or teacher.pt."),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write."),
    input_size: int = typer.Option(32, help="Pixel size of the reference pack the graph will read."),
    features: bool = typer.Option(True, help="Also output the pooled feature vector."),
    nearest: bool = typer.Option(
        True,
        help="Also output each image's distance to the teacher's anchors (its own training images), "
        "for --strategy nearest. A teacher trained before anchors were kept takes them from --target.",
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Also write an int8 (static QDQ) copy for fast CPU scoring, "
        "calibrated on --target's training images: OUT, with the fp32 graph at OUT.fp32.onnx.",
    ),
    target: str | None = typer.Option(
        None, "--target", "-t", help="Calibration images for --int8; anchors for an older teacher."
    ),
    calibration_images: int = typer.Option(512, min=8, help="How many training images calibrate --int8."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export to ONNX: uint8 NHWC in (as packs store images), logits out; checked against torch."""
    from .server.teacher import export_int8, export_onnx

    if int8:
        r = export_int8(teacher, out, target, input_size=input_size, calibration_images=calibration_images)
        _print_json(r) if as_json else typer.echo(
            f"wrote {out} (int8, {r['bytes'] / 2**20:.1f} MiB; fp32 {r['fp32']['onnx']}), max |energy diff| on "
            f"calibration images {r['max_abs_energy_diff']:.3g}, top-1 agreement {r['argmax_agreement']:.3f}"
        )
        return
    r = export_onnx(teacher, out, input_size=input_size, with_features=features, nearest=nearest, target=target)
    _print_json(r) if as_json else typer.echo(
        f"wrote {out} ({r['bytes'] / 2**20:.1f} MiB), max |logit diff| vs torch {r['max_abs_logit_diff']:.2e}, "
        + (f"{r['anchors']:,} anchors" if r["anchors"] else "no anchors (strategy nearest will use energy)")
        + (
            f"; {len(r['blind'])} blind teachers for --forecast: {r['blind'][0]}, ..."
            if len(r.get("blind") or []) > 1
            else f"; its blind teacher for --forecast: {r['blind'][0]}"
            if r.get("blind")
            else ""
        )
    )


@teacher_app.command("import")
@_clean_errors
def teacher_import(
    model: Path = typer.Argument(..., help="Any ONNX image classifier (one 4-D image input, class scores out)."),
    out: Path = typer.Option(..., "--out", "-o", help="The plada-edge teacher .onnx to write."),
    input_size: int = typer.Option(32, help="Side of the reference pack's images (what score feeds it)."),
    layout: Layout = typer.Option("auto", help="The model's input layout; auto: the axis of size 3."),
    scale: float = typer.Option(1.0, help="The model wants pixels in [0, SCALE]: 1 or 255."),
    normalisation: str = typer.Option(
        "imagenet", help="After scaling: imagenet (mean/std), half (0.5/0.5), none, or MEAN,MEAN,MEAN/STD,STD,STD."
    ),
    probabilities: bool = typer.Option(False, help="The model ends in a softmax (its log becomes the logits)."),
    classes: Path | None = typer.Option(None, help="Class names, one per line (default: the model's metadata)."),
    target: str | None = typer.Option(None, "--target", "-t", help="Measure the teacher's accuracy on this target."),
    as_json: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
) -> None:
    """Wrap your own ONNX classifier so score, pack, build and serve use it like a trained teacher."""
    from .server.imports import import_onnx, parse_normalisation, teacher_test_accuracy

    r = import_onnx(
        model,
        out,
        input_size=input_size,
        layout=layout,
        scale=scale,
        normalisation=parse_normalisation(normalisation),
        probabilities=probabilities,
        classes=classes,
    )
    if target:
        r["test_acc"] = teacher_test_accuracy(out, target, record=True)
    if as_json:
        _print_json(r)
        return
    acc = f", test accuracy {r['test_acc']:.4f}" if r.get("test_acc") is not None else ""
    typer.echo(
        f"wrote {out}: {r['classes']} classes, {r['layout']} {r['model_size'][0]}x{r['model_size'][1]} "
        f"model fed {input_size} px pack images; max |logit diff| vs the original {r['max_abs_logit_diff']:.2e}{acc}"
    )
    if r["warning"]:
        typer.echo(f"warning: {r['warning']}", err=True)


@app.command()
@_clean_errors
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the architectures teachers and students can use, and which have ImageNet weights installed.

    `--weights imagenet` (and `--recipe pretrained`) need one; put ARCH.pth or ARCH.safetensors in
    $PLADA_EDGE_WEIGHTS (default ~/.cache/plada-edge/weights) to add your own.
    """
    from .core.models import describe_models, pretrained_weights, weights_dir
    from .core.recipes import installed_pretrained_arch

    notes = describe_models()
    if as_json:
        _print_json(
            {
                "models": {n: {"note": note, "imagenet": pretrained_weights(n)} for n, note in notes.items()},
                "weights_dir": str(weights_dir()),
                "pretrained_recipe_uses": installed_pretrained_arch(),
            }
        )
        return
    for name, note in notes.items():
        typer.echo(f"{name:<20} {note}")
    found = installed_pretrained_arch()
    typer.echo(
        f"\n--recipe auto/pretrained uses: {found}"
        if found
        else "\nno ImageNet weights installed: --recipe auto trains from scratch"
    )


@app.command()
@_clean_errors
@config_options(ScoreConfig, "options")
def score(
    options: dict,
    teacher: Path = typer.Option(..., "--teacher", help="Exported teacher .onnx."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference pack directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Scores directory (resumable)."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON."),
) -> None:
    """Score every reference image by energy (entropy, label; distance when the teacher has anchors); resumable."""
    from .core.reference import ReferencePack
    from .server.scoring import score_pack

    if options["checkpoint"] is not None:
        options["checkpoint"] = str(options["checkpoint"])
    info = score_pack(teacher, ReferencePack.open(reference), out, ScoreConfig(**options)).info()
    _print_json(info) if as_json else typer.echo(f"scored {info['n']:,} images ({info['flagged']} flagged) → {out}")


EXPLAIN_OPTION = typer.Option(
    False, "--explain", help="Also print the plan: each choice, the rule that made it, why, and that rule's evidence."
)


def _print_selection(report: dict, explained=None) -> None:
    why = f" ({report['chosen_by']})" if report.get("chosen_by") else ""
    typer.echo(
        f"{report['strategy']}{why}: kept {report['k']:,} of {report['pack_n']:,} ({report['keep']:.2%})"
        + (
            (
                f", Safety-Net quotas=target (power {report['safety_net']['target_power']:g})"
                if report["safety_net"].get("quotas") == "target"
                else f", Safety-Net alpha={report['safety_net']['alpha']} share={report['safety_net']['share']}"
            )
            if report["safety_net"]
            else ""
        )
        + (f", spread {report['spread']:.3g}" if report.get("spread", 1) != 1 else "")
    )
    total = max(1, report["k"])
    for name, c in report["label_histogram"].items():
        typer.echo(f"  {name:<20} {c:>8,}  {'#' * int(40 * c / total)}")
    for name, c in report.get("sources", {}).items():
        typer.echo(f"  from {name:<15} {c:>8,}")
    # report["warnings"] reached stderr already, as the library's PladaWarning
    if explained is not None:  # the Selection: its plan, with the spread its budget came to
        typer.echo("plan:")
        for line in explained.plan.explain(explained.spread):
            typer.echo(f"  {line}")


KEEP_OPTION = typer.Option(None, help=f"Budget as a share of the pack, e.g. 1% or 0.01 (default: {KEEP}).")
COUNT_OPTION = typer.Option(None, help="Budget as a number of images.")


@app.command("select")
@_clean_errors
@config_options(SelectionConfig, "selection")
def select_cmd(
    selection: dict,
    scores: Path = typer.Argument(..., help="Scores directory (plada-edge score)."),
    keep: str | None = KEEP_OPTION,
    count: int | None = COUNT_OPTION,
    reference: Path | None = typer.Option(
        None, "--reference", "-r", help="Pack, to check the fingerprint and report sources."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write indices and labels to this .npz."),
    explain: bool = EXPLAIN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Choose images to send: report the label histogram, warn when classes vanish."""
    from .core.reference import ReferencePack
    from .server.scoring import Scores
    from .server.selection import save_selection, select

    pack = ReferencePack.open(reference) if reference else None
    sel = select(Scores.open(scores, pack), SelectionConfig(**selection), keep=keep, count=count)
    if out:
        save_selection(out, sel)
    report = sel.report(pack)
    _print_json(report) if as_json else _print_selection(report, sel if explain else None)


@app.command("pack")
@_clean_errors
@config_options(SelectionConfig, "selection")
def pack_cmd(
    selection: dict,
    scores: Path = typer.Argument(..., help="Scores directory (plada-edge score)."),
    out: Path = typer.Option(..., "--out", "-o", help="Payload file to write (.plada)."),
    max_bytes: str | None = typer.Option(
        None, "--max-bytes", help="Largest payload that fits this size: 100KB, 64KiB."
    ),
    budget_alias: str | None = typer.Option(None, "--budget", hidden=True),  # max-bytes' old name
    keep: str | None = KEEP_OPTION,
    count: int | None = COUNT_OPTION,
    codec: str = typer.Option("auto", help="model | paper-idx | paper-bmp | varint | auto (smallest)."),
    task: str | None = typer.Option(None, help="Task name in the header (default: the target's)."),
    sign: Path | None = typer.Option(
        None,
        "--sign",
        envvar="PLADA_EDGE_SIGNING_KEY",
        help="Sign with this Ed25519 private key (plada-edge keys generate).",
    ),
    version: int | None = typer.Option(
        None,
        "--version",
        min=1,
        help="Release version, checked by devices against rollback (default with --sign: one more than the "
        "payload already at --out for the same task, else 1).",
    ),
    expires: str | None = typer.Option(
        None, "--expires", help="When devices stop accepting it: never (default), a duration (30d, 12h) or a date."
    ),
    forecast: bool = typer.Option(
        False,
        "--forecast",
        help="Predict the device's student accuracy: per held-out fold, the student recipe trained on the same "
        "plan picked by the teacher's blind twin (NAME.blind.onnx, NAME.blind-1.onnx, ...: trained without the "
        "fold; each scores the pool once), judged on the fold (needs --target and --reference); into the header.",
    ),
    goal: float | None = typer.Option(
        None,
        "--goal",
        help="Send the fewest images whose forecast reaches this share of the teacher's accuracy (0.9), searched "
        "up to --max-bytes or GOAL_MAX_KEEP of the pack; a goal out of reach warns and sends that bound.",
    ),
    goal_acc: float | None = typer.Option(None, "--goal-acc", help="As --goal, an accuracy to reach (0.6)."),
    soft: int = typer.Option(
        0,
        "--soft",
        min=0,
        max=8,
        help="Soft labels of this many bits (0 = off): per image the teacher's runner-up class and its quantised "
        "confidence, which learn trains on beside the hard label (needs --teacher and --reference).",
    ),
    teacher: Path | None = typer.Option(
        None,
        "--teacher",
        help="The teacher .onnx the scores came from, for --soft; for --forecast and --goal, where its blind "
        "twin lies (default: where the scores were made from).",
    ),
    target: str | None = typer.Option(
        None, "--target", "-t", help="Target data, for --forecast, --goal and --strategy auto."
    ),
    reference: Path | None = typer.Option(
        None, "--reference", "-r", help="Reference pack, for --forecast, --goal and --strategy auto."
    ),
    test_split: float | None = TEST_SPLIT_OPTION,
    target_size: int | None = TARGET_SIZE_OPTION,
    explain: bool = EXPLAIN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the selection report and size as JSON."),
) -> None:
    """Select and write a payload: (index, label) pairs, fingerprinted, checksummed or signed (--sign)."""
    from .core.keys import SigningKey
    from .core.reference import ReferencePack
    from .server.packing import make_payload
    from .server.scoring import Scores

    pack = ReferencePack.open(reference) if reference else None
    made = make_payload(
        Scores.open(scores, pack),
        out,
        SelectionConfig(**selection),
        keep=keep,
        count=count,
        max_bytes=_either(max_bytes, budget_alias, "--max-bytes", "--budget"),
        codec=codec,
        task=task,
        target=_target(target, test_split, target_size),
        pack=pack,
        signer=SigningKey(sign) if sign else None,
        version=version,
        expires=expires,
        forecast=forecast,
        goal=goal,
        goal_acc=goal_acc,
        soft=soft,
        teacher=teacher,
    )
    payload, sel, data = made
    report = dict(made.to_dict(pack), out=str(out))
    if sel.auto:
        report["auto"] = sel.auto
    if as_json:
        _print_json(report)
        return
    _print_selection(report, sel if explain else None)
    bits = 8 * len(data) / max(1, sel.k)
    typer.echo(
        f"wrote {out}: {len(data):,} bytes ({payload.header['codec']}), {bits:.2f} bits per image"
        + (f", signed by {payload.signer_id}" if payload.signer_id else "")
        + _release_text(payload.header.get("release"))
    )
    if sel.forecast is not None:
        typer.echo(f"forecast: the device's student, estimated: {sel.forecast} (a rough guide: README, --forecast)")


def _release_text(release: dict | None) -> str:
    if not release:
        return ""
    import time

    ends = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(release["expires"])) if release.get("expires") else None
    return f", release {release['version']}" + (f" (expires {ends})" if ends else "")


def _write_grid(payload: Path, grid: Path, reference: Path | None, scores: Path | None, per_class: int) -> Path:
    from .core import atomic
    from .core.errors import ConfigError
    from .core.payload import read_payload
    from .core.reference import ReferencePack
    from .core.sheets import payload_sheet
    from .server.scoring import open_scores

    if reference is None:
        raise ConfigError("--grid draws the selected images from the pack: give --reference PACK")
    pack = ReferencePack.open(reference)
    energy = open_scores(scores, pack).energy if scores else None
    return atomic.write_bytes(grid, payload_sheet(read_payload(payload), pack, energy, per_class))


@app.command()
@_clean_errors
def inspect(
    payload: Path = typer.Argument(..., help="A .plada payload."),
    trust: str | None = typer.Option(
        None,
        "--trust",
        envvar="PLADA_EDGE_TRUST",
        help="Refuse it unless signed by this Ed25519 public key (.pub file).",
    ),
    grid: Path | None = typer.Option(
        None, "--grid", help="Write a contact sheet PNG: per class, the selected images (needs --reference)."
    ),
    reference: Path | None = typer.Option(None, "--reference", "-r", help="The pack the payload names, for --grid."),
    scores: Path | None = typer.Option(
        None,
        "--scores",
        help="Scores of that pack: rows in energy order, and the energy histogram with the cut, in the --grid picture.",
    ),
    per_class: int = typer.Option(12, min=1, max=64, help="Images per class in the --grid picture."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate a payload and show its header, size, bits per image and the information floor."""
    from .core.keys import load_public_key
    from .core.payload import inspect_payload

    r = inspect_payload(payload, load_public_key(trust) if trust else None)
    if grid is not None:
        r["grid"] = str(_write_grid(payload, grid, reference, scores, per_class))
    if as_json:
        _print_json(r)
        return
    h = r["header"]
    typer.echo(
        f"{payload}: task '{h['task']}', {r['k']:,} of {r['n']:,} images, {r['classes']} classes, codec {h['codec']}"
    )
    typer.echo(f"  pack      {h['pack_fingerprint']}")
    typer.echo(
        f"  format    v{r['format_version']}, header {r['header_bytes']:,} B, trailer {r['trailer_bytes']:,} B, "
        + (f"signed by key {r['signed_by']}" if r["signed_by"] else "checksummed, not signed")
    )
    bits, ratio = r["bits_per_image"] or 0, r["body_to_floor"] or 0
    typer.echo(f"  size      {r['bytes']:,} bytes (body {r['body_bytes']:,}), {bits:.2f} bits per kept image")
    typer.echo(f"  floor     {r['floor_bytes']:,.0f} bytes = log2 C(N,k) + k·H(labels); body/floor {ratio:.3f}")
    sel = h.get("selection", {})
    if sel:
        net = sel.get("safety_net") or {}
        quotas = f" quotas=target (power {net['target_power']:g})" if net.get("quotas") == "target" else ""
        typer.echo(
            f"  selection {sel.get('strategy')} keep {sel.get('keep', 0):.2%}"
            + (f", Safety-Net{quotas}" if net else "")
            + f", spread {sel.get('spread', 1):.3g}"
        )
    if h.get("release"):
        typer.echo(f"  release   {_release_text(h['release']).removeprefix(', release ')}")
    if h.get("soft"):
        typer.echo(f"  soft      {h['soft']['bits']}-bit soft labels: the teacher's runner-up and confidence per image")
    if h.get("forecast"):
        f = h["forecast"]
        typer.echo(f"  forecast  {f['accuracy']:.3f} ({f['low']:.3f}-{f['high']:.3f}, {f['images']} held-out images)")
    if r.get("grid"):
        typer.echo(f"  grid      {r['grid']}")
    t = h.get("teacher") or {}
    if t.get("test_acc") is not None:
        typer.echo(f"  teacher   {t.get('arch')} test accuracy {t['test_acc']:.4f}")


@app.command()
@_clean_errors
def packets(
    payload: Path = typer.Argument(..., help="The .plada payload to send over a lossy one-way link."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the packets into (packet-NNNNN.bin)."),
    size: int = typer.Option(64, "--size", min=27, max=65535, help="Bytes per packet (19 of them header)."),
    overhead: str = typer.Option("30%", "--overhead", help="Repair packets as a share of the source packets."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Cut a payload into fountain-coded packets (RaptorQ, RFC 6330): any sufficient subset, in any order,
    rebuilds it (plada-edge assemble); docs/benchmarks.md ("packets") has the overhead each loss rate needs."""
    from .core.packets import write_packets

    r = write_packets(payload, out, size=size, overhead=overhead)
    _print_json(r) if as_json else typer.echo(
        f"wrote {r['packets']} packets of {size} bytes to {out} ({r['source']} would do with no loss; "
        f"{r['bytes']:,} bytes in all for a {r['payload_bytes']:,}-byte payload)"
    )


@app.command()
@_clean_errors
def assemble(
    sources: list[Path] = typer.Argument(..., help="Packet files, or folders of them, as they arrived."),
    out: Path = typer.Option(..., "--out", "-o", help="The payload to write (.plada)."),
    trust: str | None = typer.Option(
        None, "--trust", envvar="PLADA_EDGE_TRUST", help="Refuse it unless signed by this Ed25519 public key."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Rebuild a payload from the packets that arrived (damaged ones are dropped) and verify it before writing."""
    from .core.packets import assemble_files

    r = assemble_files(sources, out, trust)
    _print_json(r) if as_json else typer.echo(
        f"rebuilt {out} ({r['bytes']:,} bytes) from {r['used']} of {r['read']} packets"
        + (f" ({r['dropped']} damaged or foreign, dropped)" if r["dropped"] else "")
    )


STUDENT_OPTIONS = ("arch", "epochs", "batch_size", "lr", "backbone_lr", "augment", "label_smoothing", "weights")
STUDENT_OPTIONS += ("seed", "hflip", "model_size", "expand", "expand_weight", "self_train", "self_train_confidence")
STUDENT_OPTIONS += ("embedder", "soft_mix", "device", "precision")


@app.command()
@_clean_errors
@config_options(StudentConfig, "options", STUDENT_OPTIONS, recipe=True)
def learn(
    options: dict,
    payload: str = typer.Argument(..., help="A .plada file, or http(s)://host/v1/tasks/NAME of a plada-edge server."),
    reference: Path = typer.Option(..., "--reference", "-r", help="This device's reference pack."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (student.pt, student.onnx, metrics.json)."),
    recipe: Recipe = RECIPE_OPTION,
    target: str | None = typer.Option(
        None,
        "--target",
        "-t",
        help="Evaluate on this target's test split afterwards (classes as the payload's).",
    ),
    eval_alias: str | None = typer.Option(None, "--eval", hidden=True),  # the name before --target
    test_split: float | None = TEST_SPLIT_OPTION,
    target_size: int | None = TARGET_SIZE_OPTION,
    trust: str | None = typer.Option(
        None,
        "--trust",
        envvar="PLADA_EDGE_TRUST",
        help="Train only on payloads signed by this Ed25519 public key (.pub file).",
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="PLADA_EDGE_TOKEN", help="Bearer token of a server that requires one (a URL payload)."
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        help="With --trust: the task asked for; a payload signed as another is refused (a URL names it).",
    ),
    allow_rollback: bool = typer.Option(
        False,
        "--allow-rollback",
        help="With --trust: accept an older release than one accepted before (a deliberate downgrade).",
    ),
    trust_store: Path | None = TRUST_STORE_OPTION,
    fresh: bool = typer.Option(False, "--fresh", help="Ignore an existing checkpoint instead of resuming it."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
) -> None:
    """Device side: verify a payload, gather its images from the pack, train and export a student.

    With --trust the device's trust store (plada-edge trust show) refuses rollbacks, expired releases, payloads of
    another task and keys that were revoked or rotated away; each refusal names its rule."""
    from .device.student import learn as run_learn

    target = _target(_either(target, eval_alias, "--target", "--eval"), test_split, target_size)
    access = {"trusted": trust, "token": token, "task": task, "allow_rollback": allow_rollback}
    m = run_learn(payload, reference, out, target=target, trust_store=trust_store, recipe=recipe,
                  resume=not fresh, **access, **options)  # fmt: skip
    if as_json:
        _print_json(m)
        return
    typer.echo(
        f"trained {m['arch']} ({m['recipe']} recipe) on {m['trained_on']:,} images "
        f"from a {m['payload_bytes']:,}-byte payload → {out}"
    )
    if m.get("expansion"):
        typer.echo(f"label expansion added {m['expansion']['added']:,} images")
    if m.get("self_training"):
        typer.echo(f"self-training added {m['self_training']['added']:,} pool images")
    if m.get("test_acc") is not None:
        t = m.get("teacher_test_acc")
        typer.echo(
            f"test accuracy {m['test_acc']:.4f}"
            + (f" (teacher {t:.4f}, ratio {m['ratio_to_teacher']:.3f})" if t else "")
        )


@app.command()
@_clean_errors
def evaluate(
    student: Path = typer.Argument(..., help="Student directory or student.onnx."),
    target: str = typer.Option(..., "--target", "-t", help="Target .npz / ImageFolder, or a name under data/targets/."),
    test_split: float | None = TEST_SPLIT_OPTION,
    target_size: int | None = TARGET_SIZE_OPTION,
    device: str = ORT_DEVICE_OPTION,
    providers: str | None = PROVIDERS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Accuracy of student.onnx on a target's test split, through onnxruntime."""
    from .device.student import evaluate as run_evaluate

    r = run_evaluate(student, _target(target, test_split, target_size), device=device, providers=providers)
    _print_json(r) if as_json else typer.echo(
        f"{r['target']}: accuracy {r['test_acc']:.4f}, macro {r['macro_acc']:.4f} on {r['n']:,} images"
    )


@app.command()
@_clean_errors
def predict(
    student: Path = typer.Argument(..., help="Student directory (from learn) or its student.onnx."),
    images: list[Path] = typer.Argument(..., help="Image files or folders of them (searched recursively)."),
    top: int = typer.Option(1, "--top", "-k", min=1, help="How many classes to report per image, best first."),
    device: str = ORT_DEVICE_OPTION,
    providers: str | None = PROVIDERS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: one object per image."),
) -> None:
    """Classify images with a trained student: a line per image (path, class, probability).

    Images of any size are resized as the pack was built (shorter side, centre crop); the model card
    (student.json beside student.onnx) gives the classes and input size.
    """
    from .device.predictor import load_student

    result = load_student(student, device, providers).predict([str(p) for p in images], top=top)
    if as_json:
        return _print_json(result.to_dict())
    for row in result.to_dict():
        tops = "  ".join(f"{t['class']} {t['prob']:.3f}" for t in row["top"])
        typer.echo(f"{row['source']}\t{tops}")


@reference_app.command("index")
@_clean_errors
def reference_index(
    pack: Path = typer.Argument(..., help="Pack directory."),
    embedder: str | None = typer.Option(None, help="efficientnet_lite0 (when installed) or pixels."),
    out: Path | None = typer.Option(None, help="Index directory (default: PACK/index)."),
    device: str = DEVICE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Embed every pack image (resumable) and build a FAISS index for label expansion."""
    from .device.index import build_index

    meta = build_index(pack, embedder, out, device=device)
    _print_json(meta) if as_json else typer.echo(
        f"{meta['embedder']} index ({meta['index']}, {meta['dim']}-d) over {meta['n']:,} images"
    )


@app.command()
@_clean_errors
def build(
    task_file: Path = typer.Argument(..., help="Task file (TOML) with [server] and [tasks.NAME] tables."),
    only: list[str] | None = typer.Option(None, "--only", help="Build only these tasks."),
    device: str | None = typer.Option(None, "--device", help="Override every task's device: " + DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the build report as JSON."),
) -> None:
    """Run the server pipeline for every task whose inputs changed (content-hash cache)."""
    from .server.tasks import build_tasks

    report = build_tasks(task_file, only=only, device=device)
    if as_json:
        return _print_json(report)
    for name, r in report.items():
        steps = ", ".join(f"{k} {v}" for k, v in r["steps"].items())
        typer.echo(f"{name}: {steps} → {r['bytes']:,} bytes")


@app.command()
@_clean_errors
def serve(
    task_file: Path = typer.Argument(..., help="Task file (TOML); missing payloads are built first."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port (1-65535)."),
    token: str | None = typer.Option(None, help="Require 'Authorization: Bearer TOKEN' (or set PLADA_EDGE_TOKEN)."),
    no_build: bool = typer.Option(False, "--no-build", help="Serve what is published; build nothing."),
    device: str | None = typer.Option(
        None, "--device", help="Override every task's device when building: " + DEVICE_HELP
    ),
) -> None:
    """HTTP dataset server: GET /v1/tasks, /v1/tasks/NAME, /v1/tasks/NAME/payload, /healthz."""
    from .server.http import serve as run_serve

    run_serve(
        task_file,
        host=host,
        port=port,
        token=token,
        build=not no_build,
        device=device,
    )


@app.command()
@_clean_errors
@config_options(SelectionConfig, "selection", ("strategy", "safety_net", "spread"))
def demo(
    selection: dict,
    target: DemoTarget = typer.Option(
        "tango",
        help="tango (colour icons: ImageNet probes, a few minutes), digits (8x8 scans) or fmnist (both from scratch).",
    ),
    workdir: Path = typer.Option(Path("runs/demo"), help="Where the demo's cache and student go."),
    keep: str = typer.Option(KEEP, help="Share of the pool to send."),
    student: str | None = typer.Option(None, help="Student architecture (default: the recipe's choice)."),
    epochs: int | None = typer.Option(None, help="Student training epochs (default: the recipe's choice)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run PLADA end to end on offline data: teacher → scores → payload → student, with a summary table."""
    from .demo import format_table, run_demo

    selection = SelectionConfig(**selection)
    r = run_demo(target=target, workdir=workdir, keep=keep, selection=selection, arch=student, epochs=epochs)
    _print_json(r) if as_json else typer.echo("\n" + format_table(r))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
