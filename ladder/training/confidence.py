"""Calibrated confidence: each model's P(correct) before it answers, after it answers, and after another did.

All fitted on training rows only; the training side's scores are out-of-fold (each row scored by models
that never saw it), the held-out side's come from models fitted on every training row. Three estimates:
- ``prefill`` [rows, models]: P(correct) from the prompt alone (the router);
- ``calibrated`` [rows, models]: P(correct | the model's answer and confidence, the prompt, the router's
  prefill P) — the raw confidence is read by its kind, so an answer log-probability and a self-check's
  log P(yes) land on one scale;
- ``after`` [rows, answered, next]: P(next model correct | the answered model's calibrated P and both
  models' prefill P), a first-order (Markov) link between rungs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ladder.core.confidence_plan import CONFIDENCE_COLUMNS, confidence_columns, logit
from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData
from ladder.training.pca import principal_axes

FOLDS = 5
PROMPT_DIMS = 16
INTERACTION_DIMS = 4
SELF_CHECK = "self_check_logprob"


@dataclass(frozen=True)
class CalibrationSettings:
    """Which signals the calibrated confidence reads (`confidence_only` is the authors' kind of model:
    each model's raw confidence alone, per kind)."""

    prompt: bool = True
    router: bool = True
    seed: int = 0

    @property
    def name(self) -> str:
        return "prompt+router+confidence" if self.prompt and self.router else "confidence only"


@dataclass(frozen=True)
class Side:
    """The estimates on one side (training rows out-of-fold, or held-out rows)."""

    prefill: np.ndarray
    calibrated: np.ndarray
    after: np.ndarray


def word_prompts(questions: list[str], fit_rows: np.ndarray, dims: int = 64) -> np.ndarray:
    """A light prompt representation when the encoder is too costly to run: tf-idf over words and word
    pairs, reduced to ``dims`` axes (fewer where the training prompts have fewer terms), both fitted on
    the ``fit_rows`` (training) prompts only."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50_000, sublinear_tf=True)
    try:
        fitted = words.fit_transform([questions[i] for i in np.flatnonzero(fit_rows)])
    except ValueError as exc:  # no term in two training prompts
        raise DataError(f"the training prompts share no words to build prompt features from ({exc})") from exc
    svd = TruncatedSVD(min(dims, fitted.shape[1]), random_state=0).fit(fitted)
    return np.asarray(svd.transform(words.transform(questions)), dtype=np.float32)


def confidence_features(data: RoutingData, model: int) -> np.ndarray:
    """The raw confidence of ``model``'s answers, read by kind (`ladder.core.confidence_plan.
    confidence_columns`): [rows, 7] (log-probability, probability and log-odds, once per kind; -inf is a
    certain "no", 0 a certain "yes")."""
    if data.answer_logprobs is None:
        raise DataError("the data has no answer_logprob column: a calibrated cascade needs confidences")
    kinds = data.confidence_kinds
    check = np.zeros(len(data), dtype=bool) if kinds is None else kinds[:, model] == SELF_CHECK
    columns = confidence_columns(data.answer_logprobs[:, model], check)
    return np.stack([columns[name] for name in CONFIDENCE_COLUMNS], axis=1)


def _fit_predict(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, c: float = 1.0) -> np.ndarray:
    if y.min() == y.max():
        return np.full(len(x_new), float(y[0]))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    model.fit(x, y)
    return np.asarray(model.predict_proba(x_new)[:, 1])


def _oof(x: np.ndarray, y: np.ndarray, seed: int, c: float = 1.0) -> np.ndarray:
    out = np.zeros(len(y))
    for fit_rows, held in KFold(FOLDS, shuffle=True, random_state=seed).split(x):
        out[held] = _fit_predict(x[fit_rows], y[fit_rows], x[held], c)
    return out


def _both(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int, c: float = 1.0) -> tuple[np.ndarray, ...]:
    return _oof(x_train, y, seed, c), _fit_predict(x_train, y, x_test, c)


def reduce_prompts(prompts: tuple[np.ndarray, np.ndarray], dims: int = PROMPT_DIMS) -> list[np.ndarray]:
    """The (train, test) prompt embeddings on the first ``dims`` principal axes of the training prompts."""
    mean, axes, _ = principal_axes(prompts[0], dims)
    return [(e - mean) @ axes for e in prompts]


def fit_confidence(
    train: RoutingData,
    test: RoutingData,
    prompts: tuple[np.ndarray, np.ndarray],
    settings: CalibrationSettings | None = None,
) -> tuple[Side, Side]:
    """The three estimates on both sides (see the module). ``prompts`` are the (train, test) prompt
    embeddings; training labels must be complete (every model answered every training question)."""
    settings = settings or CalibrationSettings()
    if np.isnan(train.labels).any() or np.isnan(test.labels).any():
        raise DataError("a calibrated cascade needs every model's answer on every question")
    reduced = reduce_prompts(prompts)
    sides = (train, test)
    kinds = [np.stack([confidence_features(d, m)[:, -1] for m in range(len(d.models))], 1) for d in sides]
    models = len(train.models)
    prefill = [np.zeros((len(d), models)) for d in sides]
    calibrated = [np.zeros((len(d), models)) for d in sides]
    for m in range(models):
        y = train.labels[:, m].astype(np.float64)
        x = [np.hstack([r, k[:, [m]]]) for r, k in zip(reduced, kinds, strict=True)]
        prefill[0][:, m], prefill[1][:, m] = _both(x[0], y, x[1], settings.seed, c=0.3)
        columns = []
        for s, d in enumerate(sides):
            conf = confidence_features(d, m)
            parts = [conf]
            if settings.router:
                parts.append(logit(prefill[s][:, [m]]))
            if settings.prompt:
                odds = conf[:, [2]] + conf[:, [5]]
                parts += [reduced[s], odds * reduced[s][:, :INTERACTION_DIMS]]
            columns.append(np.hstack(parts))
        calibrated[0][:, m], calibrated[1][:, m] = _both(columns[0], y, columns[1], settings.seed)
    after = [np.zeros((len(d), models, models)) for d in sides]
    for j in range(models):
        y = train.labels[:, j].astype(np.float64)
        for m in range(models):
            if m == j:
                continue
            x = [
                np.stack([logit(c[:, m]), logit(p[:, j]), logit(p[:, m])], 1)
                if settings.router
                else np.stack([logit(c[:, m])], 1)
                for c, p in zip(calibrated, prefill, strict=True)
            ]
            after[0][:, m, j], after[1][:, m, j] = _both(x[0], y, x[1], settings.seed)
    if not settings.router:  # the authors' chains start unread: P(correct) before any answer is the base rate
        for s in (0, 1):
            prefill[s][:] = train.labels.mean(axis=0)
    return (
        Side(prefill[0], calibrated[0], after[0]),
        Side(prefill[1], calibrated[1], after[1]),
    )
