"""Command-line options built from the parameter objects, so each is declared once (in plada_edge.core.config).

``@config_options(SelectionConfig, into="selection")`` adds every field of SelectionConfig to a command as
an option (its name, default, help, choices and flag from the field's ``opt`` metadata) and hands the
command their values as one dict, ``selection``, ready for ``SelectionConfig(**selection)`` or a library
function's keyword options. With ``recipe=True`` the fields a recipe fills (RECIPE_FIELDS) default to
unset, so ``--recipe`` can fill them, and their help says what the scratch recipe would use.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any, Literal, get_type_hints

import typer

from .core.config import TrainConfig, flat_defaults
from .core.errors import ConfigError
from .core.recipes import RECIPE_FIELDS

ALIAS = "__old_name"  # suffix of the hidden parameter that takes an option's old name


def _fields(cls) -> dict[str, tuple[Any, Any]]:
    """Every option field of ``cls`` (its TrainConfig's beside its own): name -> (dataclass field, its type)."""
    out = {}
    for klass in (cls, TrainConfig) if any(f.name == "train" for f in fields(cls)) else (cls,):
        hints = get_type_hints(klass)
        out.update({f.name: (f, hints[f.name]) for f in fields(klass) if "help" in f.metadata})
    return out


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parameter(name: str, field, kind, default: Any, recipe: bool) -> list[inspect.Parameter]:
    meta = field.metadata
    help_text = meta["help"]
    annotation = meta["cli_type"] or kind
    if meta["choices"]:
        annotation = Literal[tuple(meta["choices"])]
    if recipe and name in RECIPE_FIELDS:  # unset on the command line: the recipe fills it
        help_text += " (recipe" + ("" if default is None else f"; scratch: {_shown(default)}") + ")"
        default = None
    if default is None:
        annotation = annotation | None
    decls = [meta["flag"] or meta["name"] or "--" + name.replace("_", "-")]
    decls += [meta["short"]] if meta["short"] else []
    option = typer.Option(default, *decls, help=help_text)
    out = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)]
    if meta["alias"]:  # the name it had before: still accepted, no longer shown
        hidden = typer.Option(None, meta["alias"], hidden=True)
        kind = inspect.Parameter.KEYWORD_ONLY
        out.append(inspect.Parameter(name + ALIAS, kind, default=hidden, annotation=annotation | None))
    return out


def config_options(cls, into: str, names: Iterable[str] | None = None, recipe: bool = False):
    """Add ``names`` (default: every option) of the config class ``cls`` to a command; it receives their
    values as the dict ``into``. In --help they follow the command's arguments, required options and
    --recipe, and precede its other options."""
    assert is_dataclass(cls)
    known = _fields(cls)
    names = list(known if names is None else names)
    defaults = flat_defaults(cls)
    added = [p for name in names for p in _parameter(name, *known[name], defaults[name], recipe)]

    def decorate(command):
        own = list(inspect.signature(command, eval_str=True).parameters.values())
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.name != into]
        lead = [p for p in own if p.name == "recipe" or getattr(p.default, "default", None) is ...]
        rest = [p for p in own if p not in lead]

        @functools.wraps(command)
        def wrapper(**kwargs):
            values = {}
            for p in added:
                value = kwargs.pop(p.name)
                if p.name.endswith(ALIAS):
                    name = p.name[: -len(ALIAS)]
                    values[name] = either(values[name], value, known[name][0].metadata, name)
                else:
                    values[p.name] = value
            return command(**kwargs, **{into: values})

        wrapper.__signature__ = inspect.Signature(lead + added + rest)
        wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
        return wrapper

    return decorate


def either(value, old, meta: dict, name: str):
    """An option given by its name or by its hidden old name, not both."""
    if value is not None and old is not None:
        shown = meta["name"] or "--" + name.replace("_", "-")
        raise ConfigError(f"give {shown} once ({meta['alias']} is its old name)")
    return value if value is not None else old
