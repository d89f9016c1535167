"""Soft labels for a payload (issue 35): per kept image, the teacher's runner-up class and its confidence.

Hard labels send the teacher's top class; a soft label adds how sure it was and what it would say second,
for a few bits more per image (plada_edge.core.payload.SoftLabels, version 3's field 3). The scores keep only
each image's top label and energy, so the teacher runs again on the kept images only (a 1 % payload is one
forward pass over 1 % of the pool); the teacher must be the one the scores came from (its SHA-256 says so).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..core.errors import ScoresError
from ..core.payload import SoftLabels


class SoftLabeller:
    """The teacher's top two per pack image, computed once per image and kept for later selections."""

    def __init__(self, teacher: str | os.PathLike, scores, pack, bits: int, batch: int = 256):
        data = Path(teacher).read_bytes()
        if hashlib.sha256(data).hexdigest() != scores.meta["teacher_sha256"]:
            raise ScoresError(f"{teacher} is not the teacher these scores came from (its SHA-256 differs)")
        from .inference import open_session

        self.session, self.pack, self.bits, self.batch = open_session(data), pack, bits, batch
        self.known: dict[int, tuple[int, float]] = {}

    def __call__(self, indices: np.ndarray) -> SoftLabels:
        todo = np.asarray([i for i in np.asarray(indices).tolist() if i not in self.known], np.int64)
        for b0 in range(0, len(todo), self.batch):
            rows = todo[b0 : b0 + self.batch]
            logits = self.session.run(["logits"], {"images": self.pack.gather(rows)})[0].astype(np.float64)
            top2 = np.argsort(-logits, axis=1)[:, :2] if logits.shape[1] > 1 else np.zeros((len(rows), 2), int)
            z = np.take_along_axis(logits, top2, 1)
            share = 1 / (1 + np.exp(np.clip(z[:, 1] - z[:, 0], -60, 60)))  # the top one's share of the top two
            for i, (runner, p) in zip(rows.tolist(), zip(top2[:, 1].tolist(), share.tolist())):
                self.known[i] = (runner, p)
        pairs = [self.known[i] for i in np.asarray(indices).tolist()]
        runner = np.asarray([r for r, _ in pairs], np.int64)
        share = np.asarray([p for _, p in pairs], np.float64)
        # the target puts the share on the hard label (the scores' top class, the same graph's) and the rest on the
        # runner-up; were a tie broken the other way, the runner-up would be the label and the target all of it
        return SoftLabels.of(runner, np.maximum(share, 0.5), self.bits)
