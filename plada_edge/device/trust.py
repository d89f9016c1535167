"""A device's trust store: a device never goes backwards (paper §3.3's channel, hardened as TUF hardens updates).

Signing proves who made a payload; it does not stop an attacker who replays an older, validly signed payload
(rollback), holds back every newer one (freeze), or serves task A's payload as task B (mix-and-match). So a
device that trusts a key (its *root*, ``learn --trust KEY.pub``) also keeps, per root, in one small JSON file:

- the keys the root has handed its trust to (rotation statements, each signed by the key it replaces) and the
  keys revoked (revocation statements);
- per task, the newest release version it accepted, and the issue time of the newest signed index it read.

``admit`` applies the rules in order and refuses with one line naming the rule: an unsigned payload, a key the
root never trusted, a revoked key, a rotated-out key, a task other than the one asked for, an expired release,
and an older version than one already accepted (``allow_rollback`` lets a deliberate downgrade through).
``admit_index`` checks a served index: signed by the root's current key, not expired, not older than the last.

Location: $PLADA_EDGE_TRUST_STORE, else $XDG_STATE_HOME/plada-edge/trust.json (~/.local/state/plada-edge/...).
Writes are atomic and serialised by a lock beside the file, so concurrent ``learn`` runs cannot lose an update.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ..core import atomic
from ..core.errors import ConfigError, TrustError
from ..core.keys import key_id, statement_signer

FORMAT = "plada-trust-v1"


def default_path() -> Path:
    """Where the trust store lives: $PLADA_EDGE_TRUST_STORE, else the XDG state folder."""
    if os.environ.get("PLADA_EDGE_TRUST_STORE"):
        return Path(os.environ["PLADA_EDGE_TRUST_STORE"])
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "plada-edge" / "trust.json"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


class TrustStore:
    """The device's memory of keys, revocations and the newest release per task, per trusted root key."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_path()

    @contextlib.contextmanager
    def editing(self):
        """The store's data, locked for the block and written back atomically at its end."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits: a learn that holds it finishes in milliseconds
            data = self.read()
            yield data
            atomic.write_json(self.path, data)
        finally:
            os.close(fd)

    def read(self) -> dict:
        if not self.path.exists():
            return {"format": FORMAT, "roots": {}}
        try:
            data = json.loads(self.path.read_text())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{self.path}: the trust store is damaged ({exc}); move it aside to start over") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{self.path}: not a plada-edge trust store")
        return data

    @staticmethod
    def _root(data: dict, root: bytes) -> dict:
        """The root's record, made on first use: the root itself is its first current key."""
        rid = key_id(root)
        return data["roots"].setdefault(
            rid, {"public": root.hex(), "keys": {rid: {"public": root.hex(), "status": "current"}}, "tasks": {}}
        )

    def apply(self, statement: dict, root: bytes) -> str:
        """Take a rotation or revocation statement into the root's record; returns what changed."""
        kind = (statement.get("signed") or {}).get("type") if isinstance(statement, dict) else None
        if kind not in ("rotation", "revocation"):
            raise TrustError("refused (malformed statement): neither a key rotation nor a revocation")
        signed, signer = statement_signer(statement, kind)
        with self.editing() as data:
            keys = self._root(data, root)["keys"]
            by = keys.get(key_id(signer))
            if by is None:
                raise TrustError(
                    f"refused (untrusted key): the {kind} is signed by key {key_id(signer)}, not in this root's chain"
                )
            if kind == "revocation":
                target = bytes.fromhex(signed["key"])
                entry = keys.setdefault(key_id(target), {"public": target.hex()})
                entry.update(status="revoked", since=signed.get("issued"))
                return f"key {key_id(target)} revoked"
            if by["status"] != "current" or signed["old"] != signer.hex():
                raise TrustError(f"refused (rotated key): only the current key may hand over, not key {key_id(signer)}")
            new = bytes.fromhex(signed["new"])
            if keys.get(key_id(new), {}).get("status") == "revoked":
                raise TrustError(f"refused (revoked key): key {key_id(new)} was revoked")
            by.update(status="rotated", since=signed.get("issued"))
            keys[key_id(new)] = {"public": new.hex(), "status": "current", "since": signed.get("issued")}
            return f"key {key_id(signer)} rotated to {key_id(new)}"

    def admit(
        self, payload, root: bytes, task: str | None = None, allow_rollback: bool = False, now: float | None = None
    ) -> None:
        """Refuse ``payload`` unless every rule holds for ``root``; then remember its release."""
        now = time.time() if now is None else now
        header = payload.header
        name = header["task"]
        if payload.signer is None:
            raise TrustError(
                f"refused (unsigned): this device trusts key {key_id(root)} and payload '{name}' is not signed"
            )
        if task is not None and name != task:
            raise TrustError(f"refused (wrong task): asked for task '{task}', the payload is signed as task '{name}'")
        release = header.get("release") or {}
        expires = release.get("expires")
        if expires is not None and expires < now:
            raise TrustError(
                f"refused (expired): task '{name}' version {release.get('version')} expired {_when(expires)}"
            )
        with self.editing() as data:
            record = self._root(data, root)
            self._check_signer(record, payload.signer)
            seen = record["tasks"].get(name)
            version = release.get("version")
            if seen and version is not None and version < seen["version"] and not allow_rollback:
                raise TrustError(
                    f"refused (rollback): task '{name}' version {version} is older than version {seen['version']} "
                    f"accepted {_when(seen['accepted'])}; learn --allow-rollback accepts it deliberately"
                )
            if seen and version is None and not allow_rollback:
                raise TrustError(
                    f"refused (rollback): task '{name}' has no release version, and version {seen['version']} was "
                    "accepted before; learn --allow-rollback accepts it deliberately"
                )
            if version is not None and (seen is None or version >= seen["version"] or allow_rollback):
                record["tasks"][name] = {"version": version, "sha256": payload.sha256, "accepted": now}

    @staticmethod
    def _check_signer(record: dict, signer: bytes) -> None:
        entry = record["keys"].get(key_id(signer))
        status = entry["status"] if entry else None
        if status == "current":
            return
        if status == "revoked":
            raise TrustError(f"refused (revoked key): key {key_id(signer)} was revoked")
        if status == "rotated":
            raise TrustError(
                f"refused (rotated key): key {key_id(signer)} was replaced; its payloads are no longer taken"
            )
        root = key_id(bytes.fromhex(record["public"]))
        raise TrustError(f"refused (untrusted key): signed by key {key_id(signer)}, which root {root} never trusted")

    def admit_index(self, index: dict, root: bytes, now: float | None = None) -> dict:
        """The tasks of a served index, once it is signed by the root's current key, unexpired and not older than
        the newest index this device read."""
        now = time.time() if now is None else now
        signed, signer = statement_signer(index, "index")
        issued, expires = signed.get("issued"), signed.get("expires")
        if not isinstance(issued, int) or not isinstance(expires, int) or not isinstance(signed.get("tasks"), dict):
            raise TrustError("refused (malformed index): issued, expires and tasks are required")
        if expires < now:
            raise TrustError(f"refused (expired index): the server's index expired {_when(expires)}")
        with self.editing() as data:
            record = self._root(data, root)
            self._check_signer(record, signer)
            if issued < record.get("index_issued", 0):
                raise TrustError(
                    f"refused (stale index): issued {_when(issued)}, older than one read before "
                    f"({_when(record['index_issued'])})"
                )
            record["index_issued"] = issued
        return signed["tasks"]

    def show(self) -> dict:
        """The store as a person reads it: per root, its keys and the newest release per task."""
        return {"path": str(self.path), **self.read()}


__all__ = ["TrustStore", "default_path"]
