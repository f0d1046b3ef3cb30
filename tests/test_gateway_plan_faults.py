"""The calibrated cascade when upstreams refuse or fail: the answer call and the self-check call, separately.

Real openai client and gateway, the answers fake on loopback whose models may send no logprobs, logprobs
without a yes or a no, refuse ``logprobs`` with a 400, answer 503, hang past the attempt timeout or send a
body that is not JSON. The offline side is `ladder.training.served_plan.play_plan` on what the calls brought:
a confidence that did not come is a missing reading, a model whose answer call failed cannot answer, and
only the calls that were paid cost anything."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from gateway_support.answers_upstream import FAULTS, AnswersUpstream
from gateway_support.common import AUTH, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.plan_strategies import served_plans
from gateway_support.pool import NAMES, shared_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladder.bench.server_thread import ServerThread
from ladder.core.cascade import mean_logprob
from ladder.core.confidence_plan import CalibratedPlan
from ladder.core.logprobs import TokenLogprob, yes_logprob
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.training.served_plan import play_plan
from tests.plan_tables import random_plan
from tests.test_gateway_cascade_plan import PLAN_PRICES, QUESTION, answer_usd, check_usd, serving, use_plan

pytest_plugins = ["gateway_support.fixtures"]

FAILS = ("HTTP 503", "hang", "malformed JSON")
"""The faults after which a call brought nothing (and was not paid)."""
ANSWER_FAULTS = ("none", "none", "no logprobs", "refuse logprobs", *FAILS)
CHECK_FAULTS = ("none", *FAULTS)
TEXTS = ["B", "(C)", "The answer is (A).", "Paris", "paris.", "Lyon", "the capital city of France is Paris"]
FAKE_TOKEN_LOGPROB = -0.05  # each answer token's logprob, as the answers fake sends it
Reply = tuple[str, float, str, str]  # text, self-check log P(yes), answer call's fault, self-check's fault


@pytest.fixture(scope="module")
def test_pool(tmp_path_factory: pytest.TempPathFactory, answers_server: tuple[AnswersUpstream, ServerThread]) -> Path:
    return shared_pool(tmp_path_factory.mktemp("faults"), answers_server[1].url, UPSTREAM_KEY_ENV)


@pytest.fixture(scope="module")
def router(test_pool: Path) -> Router:
    return Router.from_pool(load_pool(test_pool))


@pytest.fixture()
def gateway(start_gateway: Any, router: Router, test_pool: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway with short attempt timeouts and no circuit breaking (each example stands alone), with an
    audit log (asking for ``start_gateway`` puts the upstream key in the environment)."""
    plan = random_plan(NAMES, 0, [(1e-6, 0.0)] * 3, [False] * 3)
    with serving(
        router,
        test_pool,
        plan,
        audit_log=str(tmp_path / "audit.jsonl"),
        attempt_timeout_s=0.3,
        first_byte_timeout_s=0.3,
        deadline_s=10.0,
        breaker_failures=10_000,
    ) as running:
        yield running


def spent_today(gateway: RunningGateway) -> tuple[int, float]:
    """The test key's requests and USD charged today, as ``GET /v1/usage`` reports them."""
    day = httpx.get(f"{gateway.url}/v1/usage", headers=AUTH).json()["data"][0]["day"]
    return int(day["requests"]), float(day["cost_usd"])


def spent_after(gateway: RunningGateway, requests: int) -> float:
    """USD charged today once ``requests`` requests are settled (settled just after each answer)."""
    deadline = time.monotonic() + 10.0
    while True:
        done, cost = spent_today(gateway)
        if done >= requests or time.monotonic() > deadline:
            return cost
        time.sleep(0.02)


def audit_lines(gateway: RunningGateway, count: int) -> list[dict[str, Any]]:
    """The audit log's lines once it holds ``count`` (each is flushed as it is written, off the event loop)."""
    deadline = time.monotonic() + 10.0
    while True:
        lines = gateway.audit_path.read_text(encoding="utf-8").splitlines() if gateway.audit_path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.02)


def offline_inputs(replies: list[Reply]) -> tuple[np.ndarray, ...]:
    """`play_plan`'s recorded inputs for one question as the calls went: an answer's logprob where it came,
    a self-check's P(yes) where one was read, and a self-check's price only where its call was paid (one is
    never made for a model that refused logprobs)."""
    texts = np.array([[r[0] for r in replies]], dtype=object)
    answer_lp, check_lp, check_cost = np.full((1, 3), np.nan), np.full((1, 3), np.nan), np.zeros((1, 3))
    for j, (text, yes, answer, check) in enumerate(replies):
        if answer == "none":
            answer_lp[0, j] = mean_logprob([TokenLogprob(w, FAKE_TOKEN_LOGPROB) for w in text.split(" ")])
        if answer == "refuse logprobs" or check in ("refuse logprobs", *FAILS):
            continue
        check_cost[0, j] = check_usd(NAMES[j])
        if check == "none":
            no = math.log1p(-math.exp(yes)) if yes > -math.inf else 0.0
            top = tuple((t, v) for t, v in (("Yes", yes), ("No", no)) if math.isfinite(v))
            token, first = ("Yes", yes) if yes >= no else ("No", no)
            check_lp[0, j] = yes_logprob([TokenLogprob(token, first, top)])
    costs = np.array([[answer_usd(m, r[0]) for m, r in zip(NAMES, replies, strict=True)]])
    return texts, answer_lp, check_lp, costs, check_cost


def ask(gateway: RunningGateway) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The cascade's status, JSON body and headers for the question, through the openai client."""
    client = gateway.openai(timeout=30.0)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="ladder-cascade", messages=[{"role": "user", "content": QUESTION}]
        )
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.json(), dict(exc.response.headers)
    completion = raw.parse()
    return raw.status_code, completion.model_dump(), dict(raw.headers)


def answer_calls(answers: AnswersUpstream) -> list[str]:
    """The models asked for an answer, a call refused for its logprobs and sent again counted once."""
    calls: list[str] = []
    for model, body in answers.seen:
        retried = calls and calls[-1] == model and not body.get("logprobs")
        if not retried and body["messages"][-1]["content"] == QUESTION:
            calls.append(model)
    return calls


# each model's reply to its answer call and its self-check, as the fake upstream plays them
REPLIES = st.lists(
    st.tuples(
        st.sampled_from(TEXTS),
        st.one_of(st.floats(-8.0, -0.001), st.just(-math.inf)),
        st.sampled_from(ANSWER_FAULTS),
        st.sampled_from(CHECK_FAULTS),
    ),
    min_size=3,
    max_size=3,
)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(plan=served_plans(NAMES, PLAN_PRICES), replies=REPLIES)
def test_upstreams_that_refuse_or_fail_are_served_as_the_plan_plays_what_they_brought(
    gateway: RunningGateway,
    router: Router,
    answers: AnswersUpstream,
    plan: CalibratedPlan,
    replies: list[Reply],
) -> None:
    """Never a 500: a completion, or every answer call failed and the envelope says so (504 after a hang,
    else 502). A completion is `play_plan`'s on what the calls brought, with the failed models out of
    reach: the same answers, self-checks and returned answer; the cost reported, listed per stage and
    charged to the key is that of the calls that were paid; the record lists each call that failed."""
    answers.reset()
    for model, (text, yes, answer, check) in zip(NAMES, replies, strict=True):
        answers.set_faults(model, text, answer, check, yes_logprob=yes)
    use_plan(gateway, plan)
    requests, spent = spent_today(gateway)
    logged = len(audit_lines(gateway, 0))
    status, body, headers = ask(gateway)
    failed = np.array([[r[2] in FAILS for r in replies]])
    router_p = np.array([[c.p_correct for c in router.route(QUESTION).decision.candidates]])
    played = play_plan(plan, router_p, *offline_inputs(replies), available=~failed)
    order = [NAMES[j] for j in played.order[0] if j >= 0]
    calls = answer_calls(answers)
    lines = audit_lines(gateway, logged + 1)
    assert len(lines) == logged + 1
    line = lines[-1]
    if not order:  # every model failed: the last failure is the client's
        assert failed.all()
        assert sorted(calls) == sorted(NAMES)
        last = replies[NAMES.index(calls[-1])][2]
        assert status == (504 if last == "hang" else 502), body
        assert set(body) == {"error"} and set(body["error"]) >= {"message", "type", "param", "code"}
        assert line["error"] and line.get("cascade") is None
        assert answers.checked() == [] and spent_after(gateway, requests) == pytest.approx(spent, abs=1e-9)
        return
    assert status == 200, body
    assert [m for m in calls if not failed[0, NAMES.index(m)]] == order
    checks = [NAMES[j] for j in played.order[0] if j >= 0 and played.checked[0, j]]
    assert answers.checked() == [m for m in checks if replies[NAMES.index(m)][2] != "refuse logprobs"]
    returned = NAMES[int(played.returned[0])]
    assert headers["x-ladder-model"] == returned
    assert body["choices"][0]["message"]["content"] == replies[NAMES.index(returned)][0]
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(played.cost[0], abs=2e-8)
    stages = body["ladder"]["cascade"]["stages"]
    assert line["cascade"]["stages"] == stages
    assert sum(s["cost_usd"] or 0.0 for s in stages) == pytest.approx(played.cost[0], rel=1e-9)
    assert spent_after(gateway, requests + 1) == pytest.approx(spent + played.cost[0], abs=1e-9)
    paid_checks = [m for m in answers.checked() if replies[NAMES.index(m)][3] not in ("refuse logprobs", *FAILS)]
    listed = [(s["model"], s["role"]) for s in stages]
    expected = [(m, role) for m in order for role in ("answer", "self-check") if role == "answer" or m in paid_checks]
    assert listed == expected
    by_model = {s["model"]: s for s in stages if s["role"] == "answer"}
    for m in answers.checked():  # a self-check that brought nothing is named in its answer's reason
        fault = replies[NAMES.index(m)][3]
        if fault in ("refuse logprobs", *FAILS):
            assert "self-check" in by_model[m]["reason"] and m not in paid_checks
    tried = [a["model"] for s in stages for a in s["fallback"]]
    reasons = " | ".join(s["reason"] or "" for s in stages)
    for m in calls:  # an answer call that failed is listed as a failed attempt, or named where it failed
        if failed[0, NAMES.index(m)]:
            assert m in tried or f"{m} failed" in reasons


CHEAP_FIRST = [(1e-7, 1e-8), (1e-5, 1e-6), (1e-5, 1e-6)]  # with cost weight 1e5, small-local answers first


def test_a_failed_first_rung_is_listed_with_the_answer_that_followed(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    """Found by the property test: the record named no model whose answer call failed before any answer."""
    use_plan(gateway, random_plan(NAMES, 3, CHEAP_FIRST, [False] * 3, cost_weight=1e5, max_stages=2))
    answers.set_faults("small-local", "B", "HTTP 503", "none")
    answers.set_faults("mid-cloud", "B", "none", "none")
    status, body, headers = ask(gateway)
    assert status == 200 and answers.asked()[0] == "small-local"
    answered = [s for s in body["ladder"]["cascade"]["stages"] if s["role"] == "answer"]
    assert answered[0]["model"] != "small-local"
    assert [(a["model"], a["outcome"]) for a in answered[0]["fallback"]] == [("small-local", "error")]
    assert int(headers["x-ladder-attempts"]) == len(answers.seen)


@pytest.mark.parametrize("fault", ["HTTP 503", "hang", "malformed JSON", "refuse logprobs"])
def test_a_self_check_that_brought_nothing_is_not_charged_and_is_named_in_its_answers_reason(
    gateway: RunningGateway, answers: AnswersUpstream, fault: str
) -> None:
    """Found by the property test: a self-check refused or failed left no trace in the record."""
    use_plan(gateway, random_plan(NAMES, 1, CHEAP_FIRST, [True, True, True], cost_weight=1e5, max_stages=1))
    answers.set_faults("small-local", "Paris", "none", fault)
    requests, spent = spent_today(gateway)
    status, body, headers = ask(gateway)
    assert status == 200 and answers.asked() == ["small-local"] and answers.checked() == ["small-local"]
    [stage] = body["ladder"]["cascade"]["stages"]
    outcome = {"HTTP 503": "failed (error)", "hang": "failed (timeout)", "malformed JSON": "failed (error)"}
    assert stage["reason"].startswith(f"self-check {outcome.get(fault, 'refused (HTTP 400)')}: unread; ")
    assert headers["x-ladder-cascade-calls"] == "small-local(answer)"
    paid = answer_usd("small-local", "Paris")
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(paid, abs=2e-8)
    assert spent_after(gateway, requests + 1) == pytest.approx(spent + paid, abs=1e-9)


def test_a_self_check_reply_that_is_neither_yes_nor_no_is_a_missing_reading(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    """Found by the property test: a reply whose first token and alternatives hold no yes and no no was
    read as a certain "no" (log P(yes) = -inf); it is paid, and nothing was read."""
    use_plan(gateway, random_plan(NAMES, 1, CHEAP_FIRST, [True, True, True], cost_weight=1e5, max_stages=1))
    answers.set_faults("small-local", "Paris", "none", "no yes/no token")
    status, body, headers = ask(gateway)
    assert status == 200
    check = body["ladder"]["cascade"]["stages"][1]
    assert check["role"] == "self-check" and check["reason"] == "neither yes nor no in its top logprobs: unread"
    paid = answer_usd("small-local", "Paris") + check_usd("small-local")
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(paid, abs=2e-8)
