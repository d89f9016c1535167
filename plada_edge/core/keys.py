"""Ed25519 keys: a payload proves where it came from (paper §3.3, the server → device channel).

A checksum only catches accidents: whoever controls the server or the connection can rewrite the
labels and the checksum with them. A server that signs its payloads with a private key, and
devices that are told to trust only its public key (``learn --trust KEY.pub``), close that gap.

    plada-edge keys generate --out server.key      # server.key (private, mode 0600) + server.key.pub

Files are PEM (PKCS#8 private, SubjectPublicKeyInfo public), readable by OpenSSL and every
Ed25519 library. Signing and verification use the ``cryptography`` package.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import atomic
from .errors import ConfigError, PayloadError

PUBLIC_KEY_BYTES = 32


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("signed payloads need the cryptography package: pip install cryptography") from None
    return serialization, ed25519


def generate_keys(out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write a new private key to ``out`` (0600) and its public key to ``out.pub``; returns their paths and id."""
    serialization, ed25519 = _crypto()
    out = Path(out)
    pub_path = out.with_name(out.name + ".pub")
    for p in (out, pub_path):
        if p.exists() and not overwrite:
            raise ConfigError(f"{p} already exists; refusing to replace a key (pass --force)")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic.write_bytes(out, private, mode=0o600)
    atomic.write_bytes(pub_path, public)
    return {"private": str(out), "public": str(pub_path), "key_id": key_id(public_raw(key.public_key()))}


def public_raw(public_key) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """A short name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(public).hexdigest()[:16]


class SigningKey:
    """A private Ed25519 key loaded from a PEM file."""

    def __init__(self, path: str | os.PathLike):
        serialization, ed25519 = _crypto()
        path = Path(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 private key")
        self._key, self.path = key, path
        self.public = public_raw(key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def load_public_key(spec: str | os.PathLike) -> bytes:
    """The raw 32-byte public key from a PEM .pub file (or a 64-character hex string)."""
    serialization, ed25519 = _crypto()
    text = str(spec)
    if len(text) == 2 * PUBLIC_KEY_BYTES and all(ch in "0123456789abcdef" for ch in text.lower()):
        return bytes.fromhex(text)
    path = Path(spec)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return public_raw(key)


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    _, ed25519 = _crypto()
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def require_trusted(signer: bytes | None, trusted: bytes | None) -> None:
    """Refuse a payload that is not signed by ``trusted`` (when a trusted key is configured)."""
    if trusted is None:
        return
    if signer is None:
        raise PayloadError(f"payload is not signed, but this device trusts only key {key_id(trusted)}")
    if signer != trusted:
        raise PayloadError(
            f"payload is signed by key {key_id(signer)}, but this device trusts only key {key_id(trusted)}"
        )


# --- signed statements: key rotation, key revocation, the served index ------------------------------------------
# A statement is {"signed": {...}, "signatures": [{"keyid", "public", "sig"}]}, the signature over the canonical
# JSON of "signed" (sorted keys, no spaces, ASCII), as The Update Framework signs its metadata. Devices keep what
# they learn from statements in their trust store (plada_edge.device.trust).

MAX_STATEMENT = 64 << 10  # bytes: a statement is a few hundred


def canonical(obj) -> bytes:
    """The bytes a statement's signature covers."""
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign_statement(signed: dict, key: SigningKey) -> dict:
    """``signed`` with ``key``'s signature."""
    sig = key.sign(canonical(signed)).hex()
    return {"signed": signed, "signatures": [{"keyid": key_id(key.public), "public": key.public.hex(), "sig": sig}]}


def statement_signer(doc, kind: str) -> tuple[dict, bytes]:
    """The ``signed`` part of a statement of type ``kind`` and the key whose signature on it verifies;
    TrustError (one line) for anything malformed, of another type, or not validly signed."""
    from .errors import TrustError

    try:
        signed, signatures = doc["signed"], doc["signatures"]
        if not isinstance(signed, dict) or signed.get("type") != kind or not isinstance(signatures, list):
            raise TypeError
        for s in signatures[:8]:
            public = bytes.fromhex(s["public"])
            if len(public) == PUBLIC_KEY_BYTES and verify(public, bytes.fromhex(s["sig"]), canonical(signed)):
                return signed, public
    except (KeyError, TypeError, ValueError, AttributeError):
        raise TrustError(f"refused (malformed {kind}): not a signed {kind} statement") from None
    raise TrustError(f"refused (forged {kind}): no valid signature on it")


def read_statement(path: str | os.PathLike) -> dict:
    """A statement file, size-bounded; ConfigError if it is not JSON."""
    import json

    path = Path(path)
    if path.stat().st_size > MAX_STATEMENT:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large for a key statement")
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a key statement (not JSON: {exc})") from None


def rotate_key(old: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """A new key pair at ``out`` and ``out.rotation.json``: the old key's signed word that the new one replaces it.
    Devices that trust the old key accept the new one once they hold the statement, and refuse the old one after."""
    import time

    old_key = SigningKey(old)
    made = generate_keys(out, overwrite=overwrite)
    new_key = SigningKey(out)
    signed = {"type": "rotation", "old": old_key.public.hex(), "new": new_key.public.hex(), "issued": int(time.time())}
    path = Path(out).with_name(Path(out).name + ".rotation.json")
    atomic.write_json(path, sign_statement(signed, old_key))
    return {**made, "rotation": str(path), "old_key_id": key_id(old_key.public)}


def revoke_key(key: str | os.PathLike, out: str | os.PathLike, reason: str = "") -> dict:
    """A revocation of ``key``, signed by the key itself: devices that hold it refuse anything that key signed."""
    import time

    signing = SigningKey(key)
    signed = {"type": "revocation", "key": signing.public.hex(), "reason": str(reason), "issued": int(time.time())}
    atomic.write_json(out, sign_statement(signed, signing))
    return {"revocation": str(out), "key_id": key_id(signing.public)}
