"""``--strategy auto``: pick the energy direction from the target's own data (paper §4.4).

The paper finds that for far-out-of-domain targets (medical images against ImageNet) keeping the
lowest-energy images collapses, and keeping the highest ("opposite") works better. Which regime a
task is in is not known in advance, so ``choose_strategy`` measures it: it holds out a stratified
share of the target's training split, builds the candidate selections (energy and opposite, with
the same budget and Safety-Net settings), trains a small proxy student on each, and keeps the
direction whose proxy scores higher on the held-out images. The report records every score.
"""

from __future__ import annotations

import tempfile

import numpy as np

from ..core.config import SelectionConfig, TrainConfig
from ..core.reference import ReferencePack
from ..core.targets import Target
from ..core.train import fit, predict
from ..core.view import ViewSpec, as_nhwc3, torch_view
from .scoring import Scores
from .selection import select_quietly

CANDIDATES = ("energy", "opposite")


def holdout_split(target: Target, share: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified indices of held-out training images."""
    rng = np.random.default_rng(seed)
    held = [
        rng.permutation(np.flatnonzero(target.y_train == c))[: max(1, int(round(share * (target.y_train == c).sum())))]
        for c in range(target.num_classes)
        if (target.y_train == c).any()
    ]
    return np.sort(np.concatenate(held)), target.y_train[np.sort(np.concatenate(held))]


def choose_strategy(
    scores: Scores,
    pack: ReferencePack,
    target: Target,
    config: SelectionConfig | None = None,
    *,
    keep=None,
    count=None,
    proxy_arch: str = "tiny_cnn",
    proxy_steps: int = 6000,
) -> tuple[str, dict]:
    """(the better direction, a report with each candidate's held-out accuracy)."""
    import torch

    from ..core.models import create_model

    config = config or SelectionConfig()
    seed = config.seed
    held, held_y = holdout_split(target, seed=seed)
    spec = ViewSpec.from_dict(scores.meta["view"])
    eval_view = torch_view(spec, input_size=target.native_size)
    report = {"held_out": int(len(held)), "proxy": proxy_arch, "candidates": {}}
    for name in CANDIDATES:
        sel = select_quietly(scores, config, keep=keep, count=count, strategy=name)
        if sel.k == 0:
            report["candidates"][name] = {"k": 0, "held_out_acc": 0.0}
            continue
        torch.manual_seed(seed)
        model = create_model(proxy_arch, scores.num_classes)
        epochs = int(np.clip(round(proxy_steps / sel.k), 2, 30))
        with tempfile.TemporaryDirectory() as tmp:
            fit(
                model,
                torch_view(spec, input_size=pack.size),
                pack.gather(sel.indices),
                sel.labels,
                TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed),
                tmp,
                resume=False,
                progress=False,
            )
        acc = float((predict(model, eval_view, as_nhwc3(target.x_train[held])).argmax(1) == held_y).mean())
        report["candidates"][name] = {"k": sel.k, "epochs": epochs, "held_out_acc": acc}
    best = max(CANDIDATES, key=lambda n: report["candidates"][n]["held_out_acc"])  # ties keep energy
    report["chosen"] = best
    return best, report
