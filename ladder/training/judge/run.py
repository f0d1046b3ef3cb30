"""Judging a store: labels from the chosen judge, stored by judge name, written as canonical CSV."""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.core.errors import ConfigError
from ladder.core.pool import PoolConfig
from ladder.training.collect.calls import CallSettings
from ladder.training.collect.store import Answer, AnswerStore
from ladder.training.dataset import RoutingData, RoutingDataBuilder, split_by_id, write_canonical
from ladder.training.judge.llm import LLMJudge
from ladder.training.judge.reference import ReferenceJudge
from ladder.training.judge.sandbox import default_jail
from ladder.training.judge.vote import vote

Labels = dict[tuple[str, str], tuple[float | None, str]]
JUDGES = ("reference", "llm", "vote")


@dataclass
class JudgeReport:
    """What a judge made of a store."""

    judge: str
    labelled: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    failed_answers: Counter[str] = field(default_factory=Counter)
    accuracy: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    judge_cost_usd: float = 0.0
    withheld: Counter[str] = field(default_factory=Counter)  # verdicts the judge may not give, by reason

    def to_dict(self) -> dict[str, Any]:
        models = sorted(set(self.labelled) | set(self.unknown) | set(self.failed_answers))
        return {
            "judge": self.judge,
            "judge_cost_usd": self.judge_cost_usd,
            "not_judged": dict(self.withheld),
            "notes": self.notes,
            "models": {
                m: {
                    "labelled": self.labelled[m],
                    "unknown": self.unknown[m],
                    "failed_answers_not_judged": self.failed_answers[m],
                    "accuracy": self.accuracy.get(m),
                }
                for m in models
            },
        }


def llm_judge(
    store: AnswerStore,
    pool: PoolConfig | None,
    judge_model: str | None,
    *,
    allow_self_judge: bool,
    graded: bool,
    pairwise: bool,
    settings: CallSettings,
) -> tuple[LLMJudge, list[str]]:
    """The judge model named on the command line, checked: known to the pool, and not a participant."""
    if pool is None or judge_model is None:
        raise ConfigError("--judge llm needs --pool and --judge-model (a model of that pool)")
    try:
        spec = pool.model(judge_model)
    except KeyError:
        raise ConfigError(
            f"--judge-model {judge_model!r} is not a model of the pool ({', '.join(pool.names)})"
        ) from None
    participants = store.stored_pool()
    answered = {a.model for a in store.answers()}
    same = [
        name
        for name, upstream_model in participants.items()
        if name in answered and (name == spec.name or upstream_model == spec.upstream.model)
    ]
    notes = []
    if same:
        if not allow_self_judge:
            raise ConfigError(
                f"judge {spec.name} also answers in this store (as {', '.join(same)}): grading itself; "
                "choose another judge or pass --allow-self-judge"
            )
        notes.append(
            f"self-judging: the judge {spec.name} also answered as {', '.join(same)} (--allow-self-judge)"
        )
    judge = LLMJudge(spec, settings, graded=graded, pairwise=pairwise, sensitive_patterns=pool.sensitive_patterns)
    return judge, notes


def make_labels(
    store: AnswerStore, kind: str, judge: LLMJudge | None, reference: ReferenceJudge
) -> tuple[str, Labels]:
    """Run the judge over every good answer in the store; failed answers are never judged."""
    questions = {q.id: q for q in store.questions()}
    good = [a for a in store.answers() if a.ok and a.question_id in questions]
    if kind == "reference":
        return reference.name, {
            (a.question_id, a.model): reference.judge(questions[a.question_id], a.text or "") for a in good
        }
    if kind == "vote":
        by_question: dict[str, dict[str, str]] = defaultdict(dict)
        for a in good:
            by_question[a.question_id][a.model] = a.text or ""
        labels: Labels = {}
        for qid, answers in by_question.items():
            for model, verdict in vote(answers).items():
                labels[(qid, model)] = verdict
        return "vote", labels
    if kind == "llm" and judge is not None:
        if judge.pairwise:
            grouped: dict[str, dict[str, str]] = defaultdict(dict)
            for a in good:
                grouped[a.question_id][a.model] = a.text or ""
            pairs = [(questions[q], answers) for q, answers in grouped.items() if len(answers) >= 2]
            return judge.name, asyncio.run(judge.compare_all(pairs))
        items = [(questions[a.question_id], a.model, a.text or "") for a in good]
        return judge.name, asyncio.run(judge.grade_all(items))
    raise ConfigError(f"unknown judge {kind!r}; choose one of {', '.join(JUDGES)}")


def labelled_data(store: AnswerStore, labels: Labels) -> RoutingData:
    """Canonical rows: one per (question, model) with a known label, with the answer, its cost and tokens."""
    questions = {q.id: q for q in store.questions()}
    answers: dict[tuple[str, str], Answer] = {(a.question_id, a.model): a for a in store.answers()}
    by_question: dict[str, list[str]] = defaultdict(list)
    for qid, model in labels:
        by_question[qid].append(model)
    builder = RoutingDataBuilder()
    for question in questions.values():
        for model in sorted(by_question.get(question.id, [])):
            correct = labels[(question.id, model)][0]
            if correct is None:
                continue
            row = builder.question(question.id, question.text, task=question.task, where=store.where)
            answer = answers[(question.id, model)]
            logprob = answer.answer_logprob()
            builder.cell(
                row,
                model,
                correct,
                cost_usd=answer.cost_usd,
                output_tokens=float(answer.output_tokens or 0),
                answer=answer.text,
                answer_logprob=math.nan if logprob is None else min(logprob, 0.0),
                where=f"{store.where} ({question.id}, {model})",
            )
    if not len(builder):
        raise ConfigError("the judge gave no known label: nothing to write")
    return builder.build()


def code_runner(store: AnswerStore, reference: ReferenceJudge) -> str | None:
    """Where the store's answer code will run, in words; refused when there is no jail and no --unsafe-code."""
    with_tests = sum(1 for q in store.questions() if q.tests)
    if not with_tests:
        return None
    if reference.jail is not None:
        return f"code answers run with limits {reference.limits} in a bubblewrap jail ({reference.jail.network})"
    status = default_jail()
    if status.jail is not None:
        return f"code answers run with limits {reference.limits} in a {status.why}"
    if not reference.unsafe_code:
        raise ConfigError(
            f"{with_tests} questions in {store.where} have tests, and answer code runs only in a jail, but "
            f"there is none here: {status.why}. Install bubblewrap (scripts/install_bubblewrap.sh) where user "
            "namespaces are allowed, or pass --unsafe-code to run model-written code unconfined, with the "
            "judge's own rights, on this machine"
        )
    return (
        f"answer code ran UNCONFINED (--unsafe-code), with limits {reference.limits} but no jail: {status.why}"
    )


def judge_store(
    store: AnswerStore,
    kind: str,
    out: Path,
    *,
    judge: LLMJudge | None = None,
    notes: list[str] | None = None,
    reference: ReferenceJudge | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
) -> JudgeReport:
    """Judge every answer in ``store``, keep the labels in it under the judge's name, write ``out``."""
    reference = reference or ReferenceJudge()
    code_note = code_runner(store, reference) if kind == "reference" else None
    name, labels = make_labels(store, kind, judge, reference)
    store.put_labels(name, labels)
    report = JudgeReport(judge=name, notes=list(notes or []))
    if code_note:
        report.notes.append(code_note)
    for answer in store.answers():
        if not answer.ok:
            report.failed_answers[answer.model] += 1
    scores: dict[str, list[float]] = defaultdict(list)
    for (_, model), (correct, _) in labels.items():
        if correct is None:
            report.unknown[model] += 1
        else:
            report.labelled[model] += 1
            scores[model].append(correct)
    report.accuracy = {m: sum(v) / len(v) for m, v in scores.items() if v}
    if judge is not None:
        report.judge_cost_usd = judge.cost_usd
        if judge.malformed:
            report.notes.append(f"{judge.malformed} malformed verdicts were asked again")
        report.withheld = Counter(judge.withheld)
        for why, times in judge.withheld.items():
            unit = "comparisons" if judge.pairwise else "answers"
            report.notes.append(
                f"{times} {unit} left unjudged (unknown): {why} (the judge {judge.spec.name} is "
                f"{judge.spec.locality})"
            )
    if judge is not None and labels and all(correct is None for correct, _ in labels.values()):
        (why, times), *_ = Counter(reason for _, reason in labels.values()).most_common(1)
        said = (judge.last_malformed or "").strip().replace("\n", " ")
        example = f"; a reply that was not a verdict began: {said[:160]!r}" if said else ""
        raise ConfigError(
            f"the judge gave no known label: nothing to write. The most common reason ({times} of "
            f"{len(labels)}): {why}{example}. Choose a judge model that follows instructions (--judge-model), "
            "or judge with --judge reference or vote"
        )
    data = labelled_data(store, labels)
    if test_fraction is not None:
        data = split_by_id(data, test_fraction=test_fraction, seed=seed)
    write_canonical(data, out)
    return report
