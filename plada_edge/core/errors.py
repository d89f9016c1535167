"""One error hierarchy for everything a user can cause and fix.

``PladaError`` (a ``ValueError``) and its subclasses mean bad input or state: a corrupt payload, a
pack of another fingerprint, an option out of range. The CLI prints them (and ``OSError``) as one
``error:`` line with exit code 2. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class PladaError(ValueError):
    """Bad input or state that the user can fix; the message says what and how."""


class ConfigError(PladaError):
    """An option, parameter object or task file with a value out of range or of the wrong kind."""


class PackError(PladaError):
    """A reference pack that is missing, incomplete, inconsistent or not the one expected."""


class TargetError(PladaError):
    """Target data (npz, image folder) that cannot be used to train or evaluate."""


class ScoresError(PladaError):
    """Scores that are incomplete, inconsistent, or made for another pack or teacher."""


class PayloadError(PladaError):
    """A payload that is not valid: wrong magic or version, truncated, corrupt, inconsistent, foreign."""


class TrustError(PayloadError):
    """A payload, index or key statement the device's trust rules refuse: each message names its rule
    (rollback, expired, wrong task, revoked key, rotated key, untrusted key, forged or stale index)."""


class ModelError(PladaError):
    """A model that cannot be built, loaded or exported: unknown name, missing weights, failed parity."""


class PladaWarning(UserWarning):
    """Work that went ahead but may not be what was meant: a class missing from a selection, a fallback."""


__all__ = [
    "PladaError",
    "ConfigError",
    "PackError",
    "TargetError",
    "ScoresError",
    "PayloadError",
    "TrustError",
    "ModelError",
    "PladaWarning",
]
