"""How cheap a cascade could match the best single model if its second opinion cost nothing: a lower bound.

    .venv/bin/python research/cascade_bounds.py CHECKPOINT DATA.csv.gz POOL.yaml OUT.json

The first model is the cheapest on the training rows and the top rung the most accurate there. For each other
model j (and for none, and for all of them at once) a learned scorer with the cascade's features (every
model's prefill P(correct), a 16-dimensional PCA of the prompt embedding, agreement with j's answer) is
fitted on the training rows to predict whether the first answer and the top model's are right. Held-out
questions escalate in the order of P(first right) - P(top right), and each costs its first answer plus the
top model where it escalated, but nothing for j's answer. The lowest cost at which that reaches the best
single model's held-out accuracy reads the held-out curve (the protocol of "cost to match") and pays nothing
for the second opinion, so no plan that asks j and reads it with such a scorer can do better; j's own cost
share says what asking it costs. `boosted` is the same bound with gradient-boosted trees as the scorer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from ladder.core.checkpoint import Checkpoint
from ladder.core.pool import load_pool
from ladder.training.answer_scorer import AnswerScorer, agreement, answer_features
from ladder.training.cascade import REDUCED_DIMS
from ladder.training.cascade_plans import top_rung
from ladder.training.dataset import read_canonical
from ladder.training.evaluate import evaluation_inputs
from ladder.training.pca import principal_axes
from ladder.training.train import training_rows


def features(
    p: np.ndarray, prompt: np.ndarray, answers: np.ndarray, first: int, others: list[int]
) -> np.ndarray:
    """The cascade scorer's features of the first answer, with agreement with each of ``others``."""
    second = [list(answers[:, j]) for j in others]
    return answer_features(list(answers[:, first]), None, second, p, prompt).values


def boosted(x_train: np.ndarray, correct: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """P(right) from gradient-boosted trees on the same features: a more flexible scorer, for comparison."""
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0
    )
    return np.asarray(model.fit(x_train, correct >= 0.5).predict_proba(x_test)[:, 1])


def bound(
    keep: np.ndarray, labels: np.ndarray, costs: np.ndarray, first: int, top: int
) -> dict[str, float | None]:
    """Escalate the least likely kept answers first; the cheapest point reaching the top model's accuracy."""
    order = np.argsort(keep, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum(labels[order, top] - labels[order, first])])
    spent = np.concatenate([[0.0], np.cumsum(costs[order, top])])
    accuracy = (labels[:, first].sum() + gain) / len(keep)
    reached = np.nonzero(accuracy >= labels[:, top].mean() - 1e-12)[0]
    if not len(reached):
        return {"cost_share": None, "escalated": None}
    k = int(reached[0])
    cost = costs[:, first].sum() + spent[k]
    return {"cost_share": round(float(cost / costs[:, top].sum()), 4), "escalated": round(k / len(keep), 4)}


def main(checkpoint_path: str, data_path: str, pool_path: str, out: str) -> None:
    checkpoint = Checkpoint.load(Path(checkpoint_path))
    pool = load_pool(Path(pool_path))
    settings = checkpoint.manifest.training.settings
    train_rows = training_rows(read_canonical([Path(f) for f in checkpoint.manifest.training.data_files]),
                               settings.get("split"))  # fmt: skip
    inputs = evaluation_inputs(
        checkpoint, training_rows(read_canonical([Path(data_path)]), "test"), pool, train_rows,
        tune_on_training=True,
    )  # fmt: skip
    train = inputs.training
    if train is None or train.answers is None or inputs.answers is None or train.embeddings is None:
        raise SystemExit("the data needs answers and training rows")
    names = inputs.names
    top = top_rung(train.labels, train.costs)
    first = int(np.argmin(train.costs.mean(axis=0)))
    mean, basis, _ = principal_axes(train.embeddings, REDUCED_DIMS)
    reduced_train = (train.embeddings - mean) @ basis
    reduced_test = (inputs.embeddings - mean) @ basis
    others = [j for j in range(len(names)) if j not in (first, top)]
    report: dict[str, Any] = {
        "first": names[first],
        "top": names[top],
        "held_out_questions": len(inputs.labels),
        "top_accuracy": float(inputs.labels[:, top].mean()),
        "second_opinion_free": [],
    }
    for asked in [[], *([j] for j in others), others]:
        x_train = features(train.oof_p, reduced_train, train.answers, first, asked)
        x_test = features(inputs.router_p, reduced_test, inputs.answers, first, asked)
        keep = AnswerScorer.fit(x_train, train.labels[:, first]).predict(x_test) - AnswerScorer.fit(
            x_train, train.labels[:, top]
        ).predict(x_test)
        keep_boosted = boosted(x_train, train.labels[:, first], x_test) - boosted(
            x_train, train.labels[:, top], x_test
        )
        agrees = [
            float(agreement(list(inputs.answers[:, first]), list(inputs.answers[:, j])).mean()) for j in asked
        ]
        report["second_opinion_free"].append(
            {
                "second_opinion": [names[j] for j in asked],
                "its_cost_share_of_top": round(
                    float(inputs.costs[:, asked].sum(axis=1).mean() / inputs.costs[:, top].mean()), 4
                ),
                "agrees_with_first": agrees,
                **bound(keep, inputs.labels, inputs.costs, first, top),
                "boosted": bound(keep_boosted, inputs.labels, inputs.costs, first, top),
            }
        )
        print(json.dumps(report["second_opinion_free"][-1]))
    Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:5])
