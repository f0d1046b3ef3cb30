"""Signals read from an answer once a model has given it: agreement, token confidence, a learned scorer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ladder.core.answers import (  # the core's rules, shared with the gateway
    SHORT_ANSWER,
    answers_agree,
    fold_text,
)

SIMILAR = 0.92
"""Cosine similarity of two free-text answers' embeddings at or above which they agree."""
FOLDS = 5

Embed = Callable[[list[str]], np.ndarray]


def agreement(
    first: Sequence[str | None], second: Sequence[str | None], embed: Embed | None = None
) -> np.ndarray:
    """1.0 where two answers to the same question agree, else 0.0 (a missing answer never agrees).

    Letters and numbers compare as `ladder.core.answers.answers_agree` reads them, other short answers exactly
    after `fold_text`; other free text agrees when the embeddings' cosine similarity is at least `SIMILAR`
    (exact folded text without an embedder).
    """
    out = np.zeros(len(first), dtype=np.float32)
    free: list[int] = []
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        settled = answers_agree(a, b)  # the gateway's rule (ladder.core.answers)
        if settled is not None:
            out[i] = float(settled)
        elif embed is None:
            out[i] = float(fold_text(a) == fold_text(b))
        else:
            free.append(i)
    if free and embed is not None:
        ea = embed([str(first[i]) for i in free])
        eb = embed([str(second[i]) for i in free])
        cosine = (ea * eb).sum(axis=1) / np.maximum(
            np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1), 1e-8
        )
        out[free] = (cosine >= SIMILAR).astype(np.float32)
    return out


def is_free_text(answers: Sequence[str | None]) -> bool:
    """Whether most given answers are longer than a short answer (then they are worth embedding)."""
    lengths = [len(fold_text(a)) for a in answers if a]
    return bool(lengths) and float(np.median(lengths)) > SHORT_ANSWER


@dataclass(frozen=True)
class AnswerFeatures:
    """Per question: what a scorer may read once the listed stages have answered."""

    values: np.ndarray  # [questions, features]
    names: list[str]


def answer_features(
    answer: Sequence[str | None],
    logprob: np.ndarray | None,
    others: Sequence[Sequence[str | None]],
    prefill_p: np.ndarray,
    extra: np.ndarray | None = None,
    embed: Embed | None = None,
) -> AnswerFeatures:
    """Features of one stage's answer: agreement with each other answer given, its token confidence, its
    length, whether it is missing, the prefill router's P(correct) for every model, and ``extra`` columns
    (e.g. a reduced embedding of the prompt and the answer)."""
    columns = [prefill_p]
    names = [f"prefill_p[{j}]" for j in range(prefill_p.shape[1])]
    for k, other in enumerate(others):
        columns.append(agreement(answer, other, embed)[:, None])
        names.append(f"agrees_with[{k}]")
    missing = np.array([not fold_text(a) for a in answer], dtype=np.float32)
    length = np.log1p([len(a or "") for a in answer]).astype(np.float32)
    columns += [missing[:, None], length[:, None]]
    names += ["missing", "log_length"]
    if logprob is not None and not np.isnan(logprob).all():
        known = ~np.isnan(logprob)
        columns += [np.where(known, logprob, 0.0)[:, None], known.astype(np.float32)[:, None]]
        names += ["mean_logprob", "has_logprob"]
    if extra is not None:
        columns.append(extra)
        names += [f"extra[{k}]" for k in range(extra.shape[1])]
    return AnswerFeatures(np.hstack(columns).astype(np.float32), names)


def _model() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500))


@dataclass
class AnswerScorer:
    """P(an answer is right) from `answer_features` (FrugalGPT's scorer, over Ladder's own features)."""

    model: Pipeline | None
    constant: float

    @classmethod
    def fit(cls, x: np.ndarray, correct: np.ndarray) -> AnswerScorer:
        y = (correct >= 0.5).astype(int)
        if y.min() == y.max():
            return cls(None, float(y.mean()))
        with threadpool_limits(1):  # small problems: threads only contend
            return cls(_model().fit(x, y), float(y.mean()))

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(x), self.constant, dtype=np.float32)
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float32)


def out_of_fold(x: np.ndarray, correct: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cross-fitted scores on training rows: each row scored by a scorer that never saw it."""
    folds = np.random.default_rng(seed).permutation(np.arange(len(x)) % FOLDS)
    out = np.zeros(len(x), dtype=np.float32)
    for k in range(FOLDS):
        held = folds == k
        out[held] = AnswerScorer.fit(x[~held], correct[~held]).predict(x[held])
    return out
