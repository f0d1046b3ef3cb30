"""Judging collected answers: against references and tests, by an LLM judge, or by majority vote."""

from ladder.training.judge.llm import LLMJudge
from ladder.training.judge.reference import ReferenceJudge
from ladder.training.judge.run import JUDGES, JudgeReport, judge_store, llm_judge
from ladder.training.judge.vote import vote

__all__ = ["JUDGES", "JudgeReport", "LLMJudge", "ReferenceJudge", "judge_store", "llm_judge", "vote"]
