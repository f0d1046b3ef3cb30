"""The calibrated cascade as served: the gateway runs the pool file's plan as offline evaluation costs it.

Real openai client and gateway, fake upstreams on loopback with set answers, logprobs and self-check replies
per model; the offline side is `ladder.training.served_plan.play_plan` on the same answers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gateway_support.answers_upstream import SELF_CHECK_USAGE, AnswersUpstream
from gateway_support.common import API_KEY, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.plan_strategies import served_plans
from gateway_support.pool import NAMES, shared_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladder.bench.server_thread import ServerThread
from ladder.core.cascade import CascadeConfig, mean_logprob
from ladder.core.confidence_plan import CalibratedPlan
from ladder.core.errors import ConfigError
from ladder.core.logprobs import TokenLogprob, yes_logprob
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.context import Purpose
from ladder.gateway.settings import load_settings
from ladder.training.served_plan import play_plan
from tests.plan_tables import random_plan

pytest_plugins = ["gateway_support.fixtures"]

QUESTION = "What is six times seven?"
# $/1M (input, output) of the test pool's models
PRICES = {"small-local": (0.10, 0.20), "mid-cloud": (0.50, 1.50), "vision-pro": (3.0, 15.0)}


def answer_usd(model: str, text: str) -> float:
    """What the fake charges for an answer: 20 prompt tokens, 10 completion tokens per word."""
    price_in, price_out = PRICES[model]
    return (20 * price_in + 10 * len(text.split(" ")) * price_out) / 1e6


def check_usd(model: str) -> float:
    price_in, price_out = PRICES[model]
    prompt, completion = SELF_CHECK_USAGE
    return (prompt * price_in + completion * price_out) / 1e6


# the plans' own prices (answer, self-check) per model: an answer's at a little above the fake's "B"
PLAN_PRICES = [(answer_usd(m, "B") * 1.5, check_usd(m)) for m in NAMES]


@pytest.fixture(scope="module")
def test_pool(tmp_path_factory: pytest.TempPathFactory, answers_server: tuple[AnswersUpstream, ServerThread]) -> Path:
    return shared_pool(tmp_path_factory.mktemp("plan"), answers_server[1].url, UPSTREAM_KEY_ENV)


@contextmanager
def serving(router: Router, test_pool: Path, plan: CalibratedPlan, **app: Any) -> Iterator[RunningGateway]:
    """A gateway on the test pool's scorer whose ``routing.cascade`` is ``plan``."""
    settings = load_settings(None, pool=test_pool, api_keys=[API_KEY], retries=0, **app)
    application = create_app(settings, router=router.with_pool(router.pool))
    with ServerThread(application) as server:
        gateway = RunningGateway(server.url, application, settings)
        use_plan(gateway, plan)
        yield gateway


def use_plan(gateway: RunningGateway, plan: CalibratedPlan) -> None:
    """The running gateway's pool with ``plan`` as its cascade (read afresh by every cascade)."""
    gw = gateway.app.state.gateway
    routing = gw.pool.routing.model_copy(update={"cascade": CascadeConfig(plan=plan)})
    gw.pool = gw.pool.model_copy(update={"routing": routing})


@pytest.fixture()
def gateway(start_gateway: Any, router: Router, test_pool: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway serving a plan (each test sets its own), with an audit log (asking for ``start_gateway``
    puts the upstream key in the environment)."""
    plan = random_plan(NAMES, 0, [(1e-6, 0.0)] * 3, [False] * 3)
    with serving(router, test_pool, plan, audit_log=str(tmp_path / "audit.jsonl")) as running:
        yield running


def ask(gateway: RunningGateway, **extra: Any) -> tuple[Any, dict[str, str]]:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="ladder-cascade", messages=[{"role": "user", "content": QUESTION}], **extra
    )
    return raw.parse(), dict(raw.headers)


TEXTS = ["A", "B", "(B)", "The answer is (A).", "42", "Paris", "paris.", "Lyon", "the capital city of France is Paris"]
Reply = tuple[str, float, str, float]  # text, each token's logprob, logprobs behaviour, self-check log P(yes)


def offline_inputs(replies: list[Reply]) -> tuple[np.ndarray, ...]:
    """`play_plan`'s recorded inputs for one question, as the fake upstream answers it."""
    texts = np.array([[r[0] for r in replies]], dtype=object)
    answer_lp, check_lp = np.full((1, 3), np.nan), np.full((1, 3), np.nan)
    for j, (text, lp, behaviour, yes) in enumerate(replies):
        if behaviour != "yes":
            continue
        answer_lp[0, j] = mean_logprob([TokenLogprob(w, lp) for w in text.split(" ")])  # type: ignore[arg-type]
        no = math.log1p(-math.exp(yes)) if yes > -math.inf else 0.0
        top = tuple((t, v) for t, v in (("Yes", yes), ("No", no)) if math.isfinite(v))
        token, first = ("Yes", yes) if yes >= no else ("No", no)
        check_lp[0, j] = yes_logprob([TokenLogprob(token, first, top)])
    costs = np.array([[answer_usd(m, r[0]) for m, r in zip(NAMES, replies, strict=True)]])
    checks = np.array([[check_usd(m) for m in NAMES]])
    return texts, answer_lp, check_lp, costs, checks


# each model's reply to its answer call and its self-check, as the fake upstream plays them
REPLIES = st.lists(
    st.tuples(
        st.sampled_from(TEXTS),
        st.floats(-6.0, -0.001),
        st.sampled_from(["yes", "yes", "ignore"]),
        st.one_of(st.floats(-8.0, -0.001), st.just(-math.inf)),
    ),
    min_size=3,
    max_size=3,
)


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(plan=served_plans(NAMES, PLAN_PRICES), replies=REPLIES)
def test_the_gateway_runs_the_plan_as_offline_evaluation_costs_it(
    gateway: RunningGateway,
    router: Router,
    answers: AnswersUpstream,
    plan: CalibratedPlan,
    replies: list[Reply],
) -> None:
    """On generated plans and replies: the same models asked in the same order, the same self-checks paid,
    the same answer returned, the same cost."""
    answers.reset()
    for model, (text, lp, behaviour, yes) in zip(NAMES, replies, strict=True):
        answers.set(model, text, logprob=lp, logprobs=behaviour, yes_logprob=yes)
    use_plan(gateway, plan)
    completion, headers = ask(gateway)
    router_p = np.array([[c.p_correct for c in router.route(QUESTION).decision.candidates]])
    assert completion.model_extra["ladder"]["p_correct"] == {  # the gateway read the same router P
        n: pytest.approx(p, abs=1e-6) for n, p in zip(NAMES, router_p[0], strict=True)
    }
    played = play_plan(plan, router_p, *offline_inputs(replies))
    order = [NAMES[j] for j in played.order[0] if j >= 0]
    assert answers.asked() == order
    assert answers.checked() == [NAMES[j] for j in played.order[0] if j >= 0 and played.checked[0, j]]
    returned = NAMES[int(played.returned[0])]
    assert headers["x-ladder-model"] == returned
    assert completion.choices[0].message.content == replies[NAMES.index(returned)][0]
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(played.cost[0], abs=2e-8)
    stages = completion.model_extra["ladder"]["cascade"]["stages"]
    assert [s["model"] for s in stages if s["role"] == "answer"] == order
    assert sum(s["cost_usd"] for s in stages) == pytest.approx(played.cost[0], rel=1e-9)


CHEAP_FIRST = [(1e-7, 1e-8), (1e-5, 1e-6), (1e-5, 1e-6)]  # with cost weight 1e5, small-local answers first


def test_a_self_check_is_a_priced_stage_of_the_record(gateway: RunningGateway, answers: AnswersUpstream) -> None:
    """Free text is read by a self-check: one more call to the same model, paid, listed and audited."""
    use_plan(gateway, random_plan(NAMES, 1, CHEAP_FIRST, [True, True, True], cost_weight=1e5, max_stages=1))
    answers.set("small-local", "Paris", yes_logprob=math.log(0.9))
    _, headers = ask(gateway)
    assert answers.seen[1][1]["messages"][-1]["content"] == "Is the answer above correct? Answer yes or no."
    assert answers.asked() == ["small-local"] and answers.checked() == ["small-local"]
    assert headers["x-ladder-cascade-calls"] == "small-local(answer),small-local(self-check)"
    spent = answer_usd("small-local", "Paris") + check_usd("small-local")
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(spent, abs=2e-8)
    [line] = gateway.audit_lines()
    check = line["cascade"]["stages"][1]
    assert check["role"] == "self-check" and check["reason"] == "P(yes) 0.9000"
    assert check["cost_usd"] == pytest.approx(check_usd("small-local"))
    assert line["cost_usd"] == pytest.approx(spent)
    # an option letter with its logprob is read as it comes: no self-check
    answers.reset()
    answers.set("small-local", "B")
    ask(gateway)
    assert answers.checked() == []


def test_the_self_check_is_charged_to_the_requests_budget_and_kept_on_prem_when_sensitive(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    """Every call of the plan passes the dispatcher: a sensitive request never meets the cloud models, not
    even for a self-check, and each self-check is charged to the request's spend hook like each answer.
    (``tests/test_dispatch_choke_point.py`` refuses a self-check to a cloud model for a sensitive request
    exactly as every other purpose of call.)"""
    use_plan(gateway, random_plan(NAMES, 2, [(1e-6, 1e-7)] * 3, [True, True, True], max_stages=3))
    for model in NAMES:
        answers.set(model, "Paris")
    _, headers = ask(gateway, extra_headers={"x-ladder-sensitive": "true"})
    refused = gateway.app.state.gateway.dispatcher.refused
    assert set(answers.asked()) == {"small-local"} and answers.checked() == ["small-local"]
    assert headers["x-ladder-model"] == "small-local"
    assert refused[Purpose.SELF_CHECK] == 0  # the plan never offered a cloud model a sensitive request

    claims: list[tuple[str, Purpose]] = []
    hook = gateway.app.state.gateway.dispatcher.spend
    reserve = hook.reserve

    async def recording(claim: Any) -> Any:
        claims.append((claim.model.name, claim.purpose))
        return await reserve(claim)

    hook.reserve = recording
    answers.reset()
    for model in NAMES:
        answers.set(model, "Paris")
    ask(gateway)
    asked = answers.asked()
    assert [c for c in claims if c[1] is Purpose.SELF_CHECK] == [(m, Purpose.SELF_CHECK) for m in asked]
    assert [c for c in claims if c[1] is Purpose.CASCADE_STAGE] == [(m, Purpose.CASCADE_STAGE) for m in asked]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["models"][0]["calibrator"]["weights"].update({"task": 1.0}), "unknown features \\['task'\\]"),
        (lambda p: p["states"].pop("small-local+mid-cloud"), "states lacks the sets \\['small-local\\+mid-cloud'\\]"),
        (lambda p: p["states"]["small-local"]["mid-cloud"]["weights"].update({"p:vision-pro": 1.0}), "not asked"),
        (lambda p: p["models"][1].update({"name": "gpt-9"}), "a set is plan models joined by"),
        (lambda p: p.update({"cost_weight": -1}), "cost_weight"),
        (lambda p: p["models"][0].update({"answer_usd": "cheap"}), "answer_usd"),
    ],
)
def test_a_bad_plan_in_the_pool_file_is_refused_with_where_and_why(
    test_pool: Path, tmp_path: Path, change: Any, message: str
) -> None:
    data = yaml.safe_load(test_pool.read_text())
    plan = random_plan(NAMES, 0, [(1e-6, 0.0)] * 3, [False] * 3).model_dump(mode="json")
    change(plan)
    data["routing"]["cascade"] = {"plan": plan}
    bad = tmp_path / "pool.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match=message) as raised:
        load_pool(bad)
    assert str(bad) in str(raised.value) and "routing.cascade" in str(raised.value)


def test_a_plan_over_models_the_pool_lacks_is_refused(test_pool: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(test_pool.read_text())
    plan = random_plan(("small-local", "mid-cloud", "gpt-9"), 0, [(1e-6, 0.0)] * 3, [False] * 3)
    data["routing"]["cascade"] = {"plan": plan.model_dump(mode="json")}
    bad = tmp_path / "pool.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(
        ConfigError, match=r"routing\.cascade\.plan\.models\.2\.name 'gpt-9' is not a model of this pool"
    ):
        load_pool(bad)
