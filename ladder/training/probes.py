"""`ladder onboard --suggest N`: the N training questions most worth labelling for a new model.

Informative probes are diverse (they cover the embedding space: one per k-means cluster) and, within a
cluster, the ones where the pool disagrees most (a question every model gets right, or every model gets
wrong, says little about where a new model stands). They are written as a questions file that
`ladder collect` reads: JSON Lines with `id` and `question`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from ladder.core.atomic import partial_file
from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData


def disagreement(labels: np.ndarray) -> np.ndarray:
    """Per question, m(1 - m) for m the mean known label over the pool (0 when all agree or none known)."""
    known = ~np.isnan(labels)
    counts = known.sum(axis=1)
    mean = np.where(counts > 0, np.nansum(labels, axis=1) / np.maximum(counts, 1), 0.5)
    return np.where(counts >= 2, mean * (1 - mean), 0.0)


def suggest(embeddings: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Row indices of ``n`` probes: per k-means cluster, the member where the pool disagrees most.

    Ties (and clusters where every member has the same disagreement) go to the member nearest the centre.
    """
    if n < 1:
        raise DataError(f"--suggest must be at least 1, got {n}")
    if n > len(embeddings):
        raise DataError(f"--suggest {n}: the training data has only {len(embeddings)} questions")
    kmeans = KMeans(n_clusters=n, n_init=1, random_state=seed, max_iter=100).fit(embeddings)
    spread = disagreement(labels)
    distance = np.linalg.norm(embeddings - kmeans.cluster_centers_[kmeans.labels_], axis=1)
    chosen = []
    for cluster in range(n):
        members = np.nonzero(kmeans.labels_ == cluster)[0]
        if len(members) == 0:
            continue
        order = np.lexsort((distance[members], -spread[members]))
        chosen.append(int(members[order[0]]))
    return np.asarray(sorted(chosen), dtype=np.int64)


def write_questions(data: RoutingData, rows: np.ndarray, path: Path) -> Path:
    """A questions file `ladder collect` reads: one JSON object per line with `id` and `question`."""
    with partial_file(path) as partial, partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            item = {"id": data.question_ids[row], "question": data.questions[row]}
            task = data.tasks[row]
            if task:
                item["task"] = task
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path
