"""Crash-safe writes: a file or directory only ever appears complete (write temp, then rename).

Used for every artefact plada-edge produces (packs, scores, payloads, checkpoints), so a killed
process never leaves something that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    """A file's SHA-256 hex digest, read in 1 MiB blocks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would briefly change it for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(default: int = 0o666) -> int:
    """The mode an ordinary open() would give a new file: ``default`` less the process umask."""
    return default & ~_umask()


@contextlib.contextmanager
def writing(path: str | os.PathLike, mode: int | None = None):
    """Yield a binary file that appears at ``path`` only if the block finishes (temp file in the same
    directory, fsync, rename); an error or kill inside it leaves nothing at ``path``.

    The file gets ``mode`` (default: 0666 less the umask, as open() would; mkstemp's 0600 would
    hide artefacts from the other users and services that read them). Secrets pass 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see ``writing``)."""
    with writing(path, mode) as f:
        f.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_npy(path: str | os.PathLike, array) -> Path:
    """np.save, atomically."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return write_bytes(path, buf.getvalue())
