"""One writer per output folder: an advisory lock, held for the whole run.

Two ``score`` runs into one ``--out`` used to interleave their chunk merges; two ``reference build``
runs into one folder both reported success with different fingerprints. Every long command now
takes ``output_lock(folder)`` first: a second run into the same folder is refused at once with a
one-line error naming the holder, and the lock vanishes with its process (``flock``), so a killed
run never leaves a stale lock behind. While it holds the lock, a run may also remove temp files a
killed run left (``clean_stale_temps``): nobody else can be writing them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import PladaError

LOCK_NAME = ".plada.lock"


class BusyError(PladaError):
    """Another plada-edge process is writing into the same output folder."""


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, lock_path: str | os.PathLike | None = None):
    """Hold an exclusive lock on ``folder`` (file ``folder/.plada.lock``, or ``lock_path``) for the block."""
    import fcntl

    folder = Path(folder)
    path = Path(lock_path) if lock_path else folder / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise BusyError(
                f"{folder} is in use by plada-edge process {holder}; wait for it or choose another output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def clean_stale_temps(folder: str | os.PathLike) -> int:
    """Remove ``.*.tmp`` files (and ``.*.tmp-*`` folders) a killed run left in ``folder``; call under the lock."""
    import shutil

    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or ".tmp-" in p.name):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed
