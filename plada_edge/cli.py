"""The ``plada-edge`` command line: a thin Typer layer, one library call per command.

Server side: teacher / score / select / pack / serve. Device side: learn / evaluate.
Shared: reference, inspect, doctor. Every command has ``--help``; reporting commands take ``--json``.
"""

from __future__ import annotations

import json

import typer

from . import __version__

app = typer.Typer(
    name="plada-edge",
    help="PLADA: ship an image-classification task as a tiny (index, label) payload over a "
    "reference set every device already stores (arXiv 2602.23358).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"plada-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """PLADA: ship a task as pseudo-labels over a shared reference set."""


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Report the kernel backend (native or numpy), SIMD level, threads and package versions."""
    from .doctor import doctor as run_doctor

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
