"""Collecting a pool's answers to your own questions: the questions file, the store, the run, the dry run."""

from ladder.training.collect.calls import CallSettings
from ladder.training.collect.estimate import estimate, sample_questions
from ladder.training.collect.questions import Question, read_questions
from ladder.training.collect.runner import CollectReport, check_keys, collect, select_models
from ladder.training.collect.store import Answer, AnswerStore

__all__ = [
    "Answer",
    "AnswerStore",
    "CallSettings",
    "CollectReport",
    "Question",
    "check_keys",
    "collect",
    "estimate",
    "read_questions",
    "sample_questions",
    "select_models",
]
