"""Honest router scores on the training rows: kept by `ladder train`, or the head refitted fold by fold.

`fit_head` is deterministic under its seed, so refitting with the manifest's settings on the same training
rows reproduces the checkpoint's own out-of-fold P(correct): each row scored by the members that never saw
it. Operating points and cascade thresholds are tuned on these, never on held-out rows. The result is
cached by content under the Ladder home.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ladder.core.atomic import partial_file
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


def stored_oof_p(checkpoint: Checkpoint, question_ids: Sequence[str]) -> np.ndarray | None:
    """The out-of-fold P(correct) `ladder train` kept for these training rows, in their order; None when the
    checkpoint holds none (built before, or onboarded) or not for every one of them."""
    if not checkpoint.oof_path.is_file():
        return None
    with np.load(checkpoint.oof_path, allow_pickle=False) as stored:
        ids, p = [str(i) for i in stored["question_ids"]], np.asarray(stored["p"], dtype=np.float32)
    if p.shape != (len(ids), len(checkpoint.models)):
        return None
    row = {qid: i for i, qid in enumerate(ids)}
    if any(qid not in row for qid in question_ids):
        return None
    return p[[row[qid] for qid in question_ids]]


def out_of_fold_p(
    checkpoint: Checkpoint,
    embeddings: np.ndarray,
    labels: np.ndarray,
    progress: Progress | None = None,
    question_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Out-of-fold P(correct) [questions, checkpoint models] for the checkpoint's training rows.

    ``labels`` are in the checkpoint's model order, for the rows (with any known label) it trained on.
    Read from the checkpoint when `ladder train` kept them for ``question_ids``; else refitted fold by fold.
    """
    if question_ids is not None and (stored := stored_oof_p(checkpoint, question_ids)) is not None:
        return stored
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
    with partial_file(cache) as partial:
        np.save(partial, oof, allow_pickle=False)
    return oof
