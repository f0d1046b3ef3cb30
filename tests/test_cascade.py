"""Answers in the canonical data, the signals read from them, and cascades tuned on training rows only."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.core.answers import answers_agree, choice_letter, final_number
from ladder.core.cascade import (
    CascadeConfig,
    Signals,
    escalation_target,
    first_rung,
    likeliest,
    second_opinion_order,
)
from ladder.core.cascade_step import Action, judge
from ladder.core.errors import DataError
from ladder.core.policy import Candidate, ChoiceOptions, PolicyName, choose
from ladder.training.answer_scorer import agreement
from ladder.training.cascade import _calls, _keep_scores, _outcomes, _Reducer, evaluate_cascades
from ladder.training.cascade_plans import CascadeSide, Plan, answering_models, gateway_settings
from ladder.training.dataset import RoutingData, read_canonical, write_canonical
from ladder.training.importers import import_data
from ladder.training.objectives import Objective, OperatingPoint, choose_point
from ladder.training.operating_points import per_task_curve, recommend_across_policies

# --- canonical columns ------------------------------------------------------------------------------


def test_answers_round_trip_through_the_canonical_csv(tmp_path: Path) -> None:
    data = RoutingData.from_labels(
        ["q1", "q2"],
        ["What is 2+2?", "Name, with a comma"],
        ["small", "large"],
        [[1.0, 0.0], [np.nan, 1.0]],
        answers=np.array([["4", 'It is "five",\nsurely'], [None, "Ada"]], dtype=object),
        answer_logprobs=[[-0.05, np.nan], [np.nan, -1.5]],
    )
    path = write_canonical(data, tmp_path / "answers.csv.gz")
    back = read_canonical([path])
    assert back.answers is not None and back.answer_logprobs is not None
    assert back.answers.tolist() == [["4", 'It is "five",\nsurely'], [None, "Ada"]]
    np.testing.assert_allclose(back.answer_logprobs, [[-0.05, np.nan], [np.nan, -1.5]], rtol=1e-6)
    assert back.subset([1]).answers.tolist() == [[None, "Ada"]]  # type: ignore[union-attr]
    assert back.select_models(["large"]).answers.tolist() == [['It is "five",\nsurely'], ["Ada"]]  # type: ignore[union-attr]


def test_data_without_answers_writes_exactly_the_old_columns(tmp_path: Path) -> None:
    data = RoutingData.from_labels(["q1"], ["Hi"], ["m"], [[1.0]])
    path = write_canonical(data, tmp_path / "plain.csv")
    assert (
        path.read_text().splitlines()[0]
        == "question_id,question,model,correct,cost_usd,output_tokens,task,split"
    )
    assert read_canonical([path]).answers is None


def test_a_positive_answer_logprob_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("question_id,question,model,correct,answer,answer_logprob\nq,Hi,m,1,yes,0.5\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: answer_logprob must be a number <= 0 \(or -inf\), got 0\.5"):
        read_canonical([path])


def test_importers_keep_the_answers_their_sources_have(tmp_path: Path) -> None:
    mmlu = tmp_path / "mmlu_pro"
    mmlu.mkdir()
    (mmlu / "questions.jsonl").write_text(
        json.dumps({"question_id": 1, "question": "2+2?", "options": ["3", "4"], "category": "math"}) + "\n"
    )
    with gzip.open(mmlu / "outputs_long.csv.gz", "wt") as handle:
        handle.write("question_id,model,pred,correct,output_chars\n1,a,B,1,40\n1,b,,0,900\n")
    data = import_data("mmlu-pro", mmlu)
    assert data.answers is not None and data.answers.tolist() == [["B", None]]

    rb = tmp_path / "rb.csv"
    rb.write_text(
        "sample_id,prompt,eval_name,m1,m2,m1|model_response,m2|model_response,m1|total_cost,m2|total_cost\n"
        "s1,Capital of France?,geo,1,0,Paris,Lyon,0.001,0.002\n"
    )
    data = import_data("routerbench", rb)
    assert data.answers is not None and data.answers.tolist() == [["Paris", "Lyon"]]

    routellm = tmp_path / "routellm"
    routellm.mkdir()
    (routellm / "gsm8k_contaminated_prompts.jsonl").write_text("")
    (routellm / "gsm8k_responses.csv").write_text(
        "prompt,weak,strong,weak_response,strong_response\nHow many?,False,True,About 3,#### 4\n"
    )
    data = import_data("routellm-gsm8k", routellm)
    assert data.answers is not None and data.answers.tolist() == [["About 3", "#### 4"]]


# --- signals ----------------------------------------------------------------------------------------


def test_agreement_is_exact_for_letters_numeric_for_numbers_and_semantic_for_free_text() -> None:
    assert choice_letter(" (b) ") == "B" and final_number("so she makes $1,018.\n#### 1018") == 1018.0
    first = ["B", "C", "The answer is 18.0", None, "Paris is the capital of France, as everyone knows well."]
    second = ["(B)", "D", "She makes 9 * 2 = 18 dollars.\n#### 18", "B", "France's capital city is Paris."]

    def embed(texts: list[str]) -> np.ndarray:  # the boundary: an embedder that sees "Paris" as the topic
        return np.array([[1.0, 0.1] if "Paris" in t else [0.0, 1.0] for t in texts])

    np.testing.assert_array_equal(agreement(first, second, embed), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(agreement(first, second, None), [1, 0, 1, 0, 0])


# --- objectives and policies ------------------------------------------------------------------------


def test_objectives_pick_different_points_from_one_curve() -> None:
    points = [
        OperatingPoint(accuracy=0.60, cost_per_1k=0.05, arena_score=0.70),
        OperatingPoint(accuracy=0.695, cost_per_1k=0.30, arena_score=0.68),
        OperatingPoint(accuracy=0.71, cost_per_1k=0.60, arena_score=0.65),
    ]
    assert choose_point(points, Objective("match-best"), 0.70) == 1
    assert choose_point(points, Objective("arena"), 0.70) == 0
    assert choose_point(points, Objective("max-accuracy-under-cost", cost_cap=0.4), 0.70) == 1
    with pytest.raises(DataError, match="--cost-cap"):
        Objective("max-accuracy-under-cost")
    with pytest.raises(DataError, match="unknown objective"):
        Objective("cheapest-ever")


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Two tasks; the cheap model is good at task a only; the router's P knows the task."""
    rng = np.random.default_rng(seed)
    tasks = ["a" if i % 2 else "b" for i in range(n)]
    is_a = np.array([t == "a" for t in tasks])
    p = np.stack([np.where(is_a, 0.85, 0.3), np.full(n, 0.8)], axis=1)
    labels = (rng.random((n, 2)) < p).astype(np.float64)
    costs = np.tile([0.0001, 0.002], (n, 1))
    return p + 0.05 * rng.normal(size=p.shape), labels, costs, tasks


def test_utility_and_per_task_baseline_find_the_cheap_task() -> None:
    p, labels, costs, tasks = synthetic(2000, 0)
    # 0.05 per $/1K: the cheap model wins where it is as good
    chosen = choose(p, costs, ChoiceOptions(PolicyName.UTILITY, cost_weight=0.05)).model
    assert (chosen[np.array([t == "a" for t in tasks])] == 0).mean() > 0.95
    curve = per_task_curve(tasks, labels, costs, tasks, labels, costs)
    mid = [pt for pt in curve if 0.9 < pt.cost_per_1k < 1.2]  # task a cheap, task b strong
    assert mid and max(pt.accuracy for pt in mid) > 0.78
    rec = recommend_across_policies(p, labels, costs, Objective("match-best"))
    assert rec["policy"] in ("cheapest", "utility") and rec["cv_cost_per_1k"] < 1.5


# --- cascades ---------------------------------------------------------------------------------------


def cascade_side(n: int, seed: int) -> CascadeSide:
    """Three models on a price ladder. The cheap model's answer confidence tells when it is right; the
    prefill scores know nothing, so only answer signals can save money."""
    rng = np.random.default_rng(seed)
    labels = np.stack([rng.random(n) < 0.6, rng.random(n) < 0.5, rng.random(n) < 0.8], axis=1).astype(
        np.float64
    )
    correct = ["4" for _ in range(n)]
    answers = np.empty((n, 3), dtype=object)
    for j in range(3):
        answers[:, j] = [
            c if y else str(rng.integers(5, 9)) for c, y in zip(correct, labels[:, j], strict=True)
        ]
    logprobs = np.where(labels == 1, -0.1, -1.2) + 0.3 * rng.normal(size=(n, 3))
    return CascadeSide(
        labels=labels,
        costs=np.tile([0.0001, 0.0002, 0.002], (n, 1)),
        answers=answers,
        logprobs=np.minimum(logprobs, 0.0).astype(np.float32),
        prefill_p=np.tile([0.6, 0.5, 0.8], (n, 1)).astype(np.float32),
        prompt=rng.normal(size=(n, 8)).astype(np.float32),
    )


def test_a_confident_cheap_answer_is_kept_and_every_call_is_costed() -> None:
    train, test = cascade_side(600, 1), cascade_side(600, 2)
    report = evaluate_cascades(["cheap", "mid", "top"], train, test, Objective("match-best"))
    best = report["cascade"]
    plan = best["plan"]
    assert plan["first"] == "cheap" and plan["top"] == "top"
    # the top model alone: 0.8 at $2/1K. A cascade on real confidence matches it for far less.
    assert plan["held_out_cost_to_match_best_single"] is not None
    assert plan["held_out_cost_to_match_best_single"] < 0.6
    for pt in best["points"]:
        floor = 0.1 if plan["second_opinion"] is None else 0.3
        expected = floor + pt["escalated"] * 2.0
        assert pt["cost_per_1k"] == pytest.approx(expected, abs=2e-6)
    agreement_plans = [p for p in report["plans"] if p["rule"] == "agreement"]
    assert agreement_plans and all(p["second_opinion"] for p in agreement_plans)
    assert "cascade_with_router" in report


def banded_side(n: int, seed: int) -> CascadeSide:
    """The router knows when the cheap model is surely right, surely wrong, or unsure; only in the unsure
    third does the mid model's answer tell (it agrees with the cheap answer exactly when that is right)."""
    rng = np.random.default_rng(seed)
    band = rng.integers(0, 3, n)  # 0 surely wrong, 1 unsure, 2 surely right
    cheap_right = rng.random(n) < np.array([0.05, 0.5, 0.97])[band]
    top_right = rng.random(n) < 0.85
    mid_right = np.where(band == 1, cheap_right, rng.random(n) < 0.5)
    labels = np.stack([cheap_right, mid_right, top_right], axis=1).astype(np.float64)
    answers = np.empty((n, 3), dtype=object)
    for j, wrong in enumerate(("B", "C", "D")):
        answers[:, j] = np.where(labels[:, j] == 1, "A", wrong)
    prefill = np.stack([np.array([0.05, 0.5, 0.97])[band], np.full(n, 0.5), np.full(n, 0.85)], axis=1)
    return CascadeSide(
        labels=labels,
        costs=np.tile([0.0001, 0.0002, 0.002], (n, 1)),
        answers=answers,
        logprobs=None,
        prefill_p=prefill.astype(np.float32),
        prompt=rng.normal(size=(n, 8)).astype(np.float32),
    )


def test_a_second_opinion_asked_only_where_unsure_costs_only_there() -> None:
    train, test = banded_side(900, 3), banded_side(900, 4)
    report = evaluate_cascades(["cheap", "mid", "top"], train, test, Objective("match-best"))
    unsure = [p for p in report["plans"] if p["rule"] == "unsure (router)" and p["first"] == "cheap"]
    assert [p["second_opinion"] for p in unsure] == ["mid where unsure"]
    plan = unsure[0]
    # sure answers kept, surely-wrong ones escalated unread, the unsure third checked by the mid model
    chosen = plan["chosen_on_training"]
    wrong, unsure_gap, right = 0.05 - 0.85, 0.5 - 0.85, 0.97 - 0.85  # keep score: P(cheap) - P(top)
    assert wrong < chosen["threshold"] <= unsure_gap < chosen["unsure_below"] <= right
    always = next(p for p in report["plans"] if p["rule"] == "agreement" and p["first"] == "cheap")
    assert plan["held_out"]["accuracy"] >= always["held_out"]["accuracy"] - 0.03
    assert plan["held_out"]["cost_per_1k"] < always["held_out"]["cost_per_1k"]
    served = report["cascade_served"]["plan"]  # what the pool file needs to serve it as costed
    assert served["rule"] == "unsure (router)" and served["first"] == "cheap"
    gateway = CascadeConfig(**served["gateway"])
    assert gateway.first == "cheapest" and gateway.second_opinion == "mid"
    assert gateway.unsure_gap == pytest.approx(
        (served["chosen_on_training"]["threshold"], served["chosen_on_training"]["unsure_below"]), abs=1e-6
    )
    assert gateway.escalate_to == "top" and gateway.max_stages == 2 and not gateway.logprobs
    best = report["cascade"]
    assert best["plan"]["rule"].startswith("unsure")
    for pt in best["points"]:  # every call costed: the first answer, each second opinion, each escalation
        expected = 0.1 + pt["second_opinions"] * 0.2 + pt["escalated"] * 2.0
        assert pt["cost_per_1k"] == pytest.approx(expected, abs=2e-6)


MODELS = ["m0", "m1", "m2", "m3"]


@settings(max_examples=300, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 0.999), min_size=4, max_size=4),
    costs=st.lists(st.floats(1e-5, 1e-2), min_size=4, max_size=4, unique=True),
    letters=st.lists(st.sampled_from("AB"), min_size=4, max_size=4),
    edges=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=2).map(sorted),
    first=st.one_of(st.none(), st.just(-1)),
    tolerance=st.sampled_from([0.05, 0.1, 0.2]),
    second=st.integers(0, 3),
    top=st.integers(0, 3),
)
def test_the_offline_unsure_plan_decides_as_the_gateway_does(
    p: list[float],
    costs: list[float],
    letters: list[str],
    edges: list[float],
    first: int | None,
    tolerance: float,
    second: int,
    top: int,
) -> None:
    """One question through `evaluate_cascades`' costing of an ``unsure (router)`` plan, and through the
    rules the gateway's cascade runs with the pool settings the plan emits (`ladder.core.cascade`: the first
    rung, the gap's verdict, the second opinion, where it escalates): the same calls, the same answer.
    The router's likeliest model need not be the plan's top rung, nor the first model the cheapest."""
    prices = np.array([costs])
    if first == -1:
        first = int(prices.argmin())  # a cheapest-first plan
    if second in (top,) or (first is not None and second == first) or first == top:
        second = next(j for j in range(4) if j not in (top, first))
    side = CascadeSide(
        np.eye(4)[[top]], prices, np.array([letters], dtype=object), None,
        np.array([p], dtype=np.float32), np.zeros((1, 4)),
    )  # fmt: skip
    plan = Plan(first, None if first is not None else tolerance, False, "unsure", top, second, "router")
    stages = answering_models(plan, side)
    scored = _keep_scores(plan, side, side, {"train": stages, "test": stages}, _Reducer(side, None), None)
    assert scored is not None
    lower, upper = edges
    offline = _outcomes(side, _calls(plan, side, stages, None), top, scored[1], [(lower, upper)])
    served = gateway_settings(plan, MODELS, side, (lower, upper))
    assert served is not None
    config = CascadeConfig(**served)

    # the gateway's rules, on the candidates its decision would hold for this question
    p32 = [float(v) for v in np.array(p, dtype=np.float32)]
    eligible = [Candidate(n, p32[j], costs[j], True) for j, n in enumerate(MODELS)]
    answering = first_rung(eligible, config, routed="unused")
    target = escalation_target(eligible, answering, config.escalate_to)
    asked: Candidate | None = None
    escalated = False
    if target is not None:
        gap = answering.p_correct - likeliest(eligible).p_correct
        verdict = judge(Signals(router_p=answering.p_correct, router_gap=gap), config, last=False, asked=False)
        if verdict.action is Action.ASK:
            asked = second_opinion_order(eligible, answering.name, config.second_opinion)[0]
            agrees = answers_agree(letters[MODELS.index(answering.name)], letters[MODELS.index(asked.name)])
            signals = Signals(router_p=answering.p_correct, agrees=agrees, router_gap=gap)
            verdict = judge(signals, config, last=False, asked=True)
        escalated = not verdict.accepted
    final = target if escalated and target is not None else answering
    spent = answering.expected_cost_usd + (asked.expected_cost_usd if asked is not None else 0.0)
    if escalated and target is not None and not (asked is not None and asked.name == target.name):
        spent += target.expected_cost_usd

    assert MODELS[int(stages[0][0])] == answering.name
    assert bool(offline["asked"][0, 0]) == (asked is not None and asked.name != answering.name)
    if asked is not None:
        assert stages[1] is not None and MODELS[int(stages[1][0])] == asked.name
    assert bool(offline["escalated"][0, 0]) == escalated
    assert offline["correct"][0, 0] == float(final.name == MODELS[top])
    assert offline["cost"][0, 0] == pytest.approx(spent, rel=1e-12)


def test_an_unsure_answer_escalates_to_the_named_model_only_where_it_may_answer() -> None:
    cheap, mid, top = (
        Candidate(n, p, c, True) for n, p, c in (("cheap", 0.5, 1.0), ("mid", 0.9, 2.0), ("top", 0.8, 9.0))
    )
    assert escalation_target([cheap, mid, top], cheap, "top") == top  # named, although mid is likelier
    assert escalation_target([cheap, mid], cheap, "top") == mid  # top may not answer: the likeliest
    assert escalation_target([cheap, mid, top], top, "top") is None  # already there: kept
    assert escalation_target([cheap, mid, top], mid, None) is None  # the likeliest answered: kept
    router_first = CascadeConfig(first="router", first_tolerance=0.35, unsure_gap=(-0.5, -0.1))
    assert first_rung([cheap, mid, top], router_first, routed="top") == mid  # 0.5 < 0.9 - 0.35 <= 0.8
    assert first_rung([cheap, mid, top], CascadeConfig(), routed="top") == top  # the routing decision
    assert [c.name for c in second_opinion_order([cheap, mid, top], "mid", "top")] == ["top", "cheap"]
    assert [c.name for c in second_opinion_order([cheap, mid, top], "top", "top")] == ["cheap", "mid"]


def test_a_second_opinion_from_the_top_model_is_paid_once() -> None:
    def cheap_and_top(side: CascadeSide) -> CascadeSide:
        keep = [0, 2]
        assert side.logprobs is not None
        return CascadeSide(
            side.labels[:, keep], side.costs[:, keep], side.answers[:, keep], side.logprobs[:, keep],
            side.prefill_p[:, keep], side.prompt,
        )  # fmt: skip

    train, test = cheap_and_top(cascade_side(400, 5)), cheap_and_top(cascade_side(400, 6))
    report = evaluate_cascades(["cheap", "top"], train, test, Objective("match-best"))
    agreement = next(p for p in report["plans"] if p["rule"] == "agreement")
    assert agreement["held_out"]["escalated"] > 0.1
    # the top model answers every question as the second opinion; an escalation reuses that answer
    assert agreement["held_out"]["cost_per_1k"] == pytest.approx(0.1 + 2.0, abs=2e-6)
