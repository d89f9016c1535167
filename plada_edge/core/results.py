"""What the public functions return: plain JSON-ready dicts that read as attributes and print briefly.

``train_teacher``, ``learn``, ``evaluate`` and ``export_teacher`` return a ``Result``: the same dict
their metrics.json holds (so ``r["test_acc"]``, ``json.dumps(r)`` and ``r == {...}`` work as before),
plus ``r.test_acc``, ``r.to_dict()`` and a one-line repr of the fields a person looks at first.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Result(dict):
    """A dict of results with attribute access, ``to_dict()`` and a short repr."""

    headline: ClassVar[tuple[str, ...]] = ()  # the fields the repr shows, in order

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {', '.join(self)}") from None

    def to_dict(self) -> dict:
        """A plain dict (what metrics.json and ``--json`` hold)."""
        return dict(self)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={_brief(self[k])}" for k in self.headline if self.get(k) is not None)
        return f"{type(self).__name__}({shown})"


def _brief(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TeacherResult(Result):
    """What ``train_teacher`` measured: architecture, recipe, input size, test accuracy."""

    headline = ("target", "arch", "recipe", "size", "test_acc", "device")


class ExportResult(Result):
    """What ``export_teacher`` wrote: the graph, its size and its agreement with torch."""

    headline = ("onnx", "bytes", "max_abs_logit_diff", "anchors")


class StudentResult(Result):
    """What ``learn`` measured: the student, the images it trained on, its accuracy against the teacher's."""

    headline = ("arch", "recipe", "trained_on", "payload_bytes", "test_acc", "ratio_to_teacher")


class Evaluation(Result):
    """``evaluate``: plain and macro accuracy of a student on a target's test split."""

    headline = ("target", "test_acc", "macro_acc", "n")
