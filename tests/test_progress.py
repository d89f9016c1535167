"""Long work reports progress off a terminal too: periodic log lines with count, rate and time left."""

from __future__ import annotations

import time

from plada_edge.core.progress import bar


def test_log_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("PLADA_EDGE_PROGRESS_SECONDS", "0.01")
    with bar("scoring", 5, None, unit="img") as b:
        for _ in range(5):
            time.sleep(0.02)
            b.advance(1, loss=0.25)
    err = capsys.readouterr().err.splitlines()
    assert err and err[0].startswith("[scoring] ") and "img/s" in err[0] and "left" in err[0]
    assert err[-1].startswith("[scoring] 5/5 img (100.0%)") and "done in" in err[-1]


def test_silent_when_asked(capsys, monkeypatch):
    monkeypatch.setenv("PLADA_EDGE_PROGRESS_SECONDS", "0.01")
    with bar("scoring", 5, False) as b:
        time.sleep(0.02)
        b.advance(5)
    monkeypatch.setenv("PLADA_EDGE_PROGRESS_SECONDS", "0")
    with bar("scoring", 5, None) as b:
        time.sleep(0.02)
        b.advance(5)
    assert capsys.readouterr().err == ""
