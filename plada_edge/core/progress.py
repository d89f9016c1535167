"""Progress for long work: a rich bar on a terminal, periodic log lines elsewhere (nohup, schedulers, CI).

A build of 14 million images or a scoring pass of an hour must say how far it is even when nobody
watches a terminal: without one, ``bar`` prints a line to stderr every PLADA_EDGE_PROGRESS_SECONDS
(default 30) with the count, the rate and the time left. ``enabled=False`` silences both.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time


class _NullBar:
    def advance(self, n: int = 1, **fields) -> None:
        pass

    def update(self, **fields) -> None:
        pass


class _RichBar:
    def __init__(self, progress, task):
        self._p, self._t = progress, task

    def advance(self, n: int = 1, **fields) -> None:
        self._p.update(self._t, advance=n, **({"info": _fmt(fields)} if fields else {}))

    def update(self, **fields) -> None:
        self._p.update(self._t, info=_fmt(fields))


class _LogBar:
    """Progress as log lines: '[scoring] 12,288/100,181 img (12.3%), 3,104 img/s, 28 s left'."""

    def __init__(self, description: str, total: int | None, unit: str, every: float):
        self.description, self.total, self.unit, self.every = description, total, unit, every
        self.done, self.t0 = 0, time.monotonic()
        self.last, self.fields = self.t0, {}

    def advance(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields.update(fields)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.emit(now)

    def update(self, **fields) -> None:
        self.fields.update(fields)

    def emit(self, now: float, final: bool = False) -> None:
        rate = self.done / max(now - self.t0, 1e-9)
        line = f"[{self.description}] {self.done:,}"
        if self.total:
            line += f"/{self.total:,} {self.unit} ({self.done / self.total:.1%})"
        else:
            line += f" {self.unit}"
        line += f", {rate:,.1f} {self.unit}/s"
        if self.total and rate > 0 and not final:
            line += f", {max(0.0, (self.total - self.done) / rate):,.0f} s left"
        if final:
            line += f", done in {now - self.t0:,.0f} s"
        if self.fields:
            line += "  " + _fmt(self.fields)
        print(line, file=sys.stderr, flush=True)


def _fmt(fields: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


@contextlib.contextmanager
def bar(description: str, total: int | None, enabled: bool | None = None, unit: str = "it"):
    """A progress bar context: ``with bar("scoring", n) as b: b.advance(k, loss=0.3)``.

    ``enabled=None``: a rich bar when stderr is a terminal, else a log line every
    PLADA_EDGE_PROGRESS_SECONDS (default 30; 0 turns them off). ``enabled=False``: nothing.
    """
    if enabled is False:
        yield _NullBar()
        return
    if enabled is None and not sys.stderr.isatty():
        every = float(os.environ.get("PLADA_EDGE_PROGRESS_SECONDS", "30"))
        if every <= 0:
            yield _NullBar()
            return
        log = _LogBar(description, total, unit, every)
        yield log
        if log.done and time.monotonic() - log.t0 >= every:  # a run long enough to have logged says it finished
            log.emit(time.monotonic(), final=True)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.1f} {unit}/s" if task.speed else "")

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, info="")
        yield _RichBar(progress, task)
