"""Honest router scores on the training rows: the checkpoint's head refitted fold by fold, out-of-fold only.

`fit_head` is deterministic under its seed, so refitting with the manifest's settings on the same training
rows reproduces the checkpoint's own out-of-fold P(correct): each row scored by the members that never saw
it. Operating points and cascade thresholds are tuned on these, never on held-out rows. The result is
cached by content under the Ladder home.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

import numpy as np

from ladder.core.checkpoint import Checkpoint
from ladder.core.home import ladder_home
from ladder.training.embed import Progress
from ladder.training.fit import HeadSettings, fit_head


def head_settings(checkpoint: Checkpoint) -> HeadSettings:
    """The head settings the checkpoint was trained with (defaults for any it does not record)."""
    recorded = checkpoint.manifest.training.settings
    known = {f.name for f in dataclasses.fields(HeadSettings)}
    values: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in known
    }
    return HeadSettings(**values)


def out_of_fold_p(
    checkpoint: Checkpoint, embeddings: np.ndarray, labels: np.ndarray, progress: Progress | None = None
) -> np.ndarray:
    """Out-of-fold P(correct) [questions, checkpoint models] for the checkpoint's training rows.

    ``labels`` are in the checkpoint's model order, for the rows (with any known label) it trained on.
    """
    settings = head_settings(checkpoint)
    digest = hashlib.sha256(repr(settings.to_dict()).encode())
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(np.nan_to_num(labels, nan=-1.0), dtype=np.float32).tobytes())
    cache = ladder_home() / "cache" / "oof" / f"{digest.hexdigest()[:32]}.npy"
    if cache.is_file():
        return np.asarray(np.load(cache, allow_pickle=False), dtype=np.float32)

    def refit(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(f"refit on training rows, to tune on (cached after): {stage}", done, total)

    oof = fit_head(embeddings, labels, settings, refit).oof_p
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, oof, allow_pickle=False)
    os.replace(partial, cache)
    return oof
