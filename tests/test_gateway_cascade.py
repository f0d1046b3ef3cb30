"""Cascade mode: a cheap rung answers, its token confidence (or a second answer, or the router's certainty)
keeps it or escalates; every call is costed, audited and traced. Real openai client, fake upstreams on
loopback with set answers and logprobs per model."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from gateway_support.answers_upstream import AnswersUpstream
from gateway_support.common import API_KEY, UPSTREAM_KEY_ENV, RunningGateway
from gateway_support.conversations import chat_conversations, mutated
from gateway_support.pool import NAMES, shared_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ladder.bench.server_thread import ServerThread
from ladder.core.cascade import CascadeConfig
from ladder.core.errors import ConfigError
from ladder.core.pool import load_pool
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings

pytest_plugins = ["gateway_support.fixtures"]

QUESTION: list[Any] = [{"role": "user", "content": "What is six times seven?"}]
CASCADE = {"first": "cheapest", "router_accept_p": 0.85, "min_mean_logprob": -0.5}
# 20 prompt tokens and 10 completion tokens per answer word, at the test pool's prices per 1M tokens
PRICES = {"small-local": (0.10, 0.20), "mid-cloud": (0.50, 1.50), "vision-pro": (3.0, 15.0)}


def cost(model: str, words: int = 1) -> float:
    price_in, price_out = PRICES[model]
    return (20 * price_in + 10 * words * price_out) / 1e6


SMALL, MID = cost("small-local"), cost("mid-cloud")


@pytest.fixture(scope="module")
def test_pool(
    tmp_path_factory: pytest.TempPathFactory, answers_server: tuple[AnswersUpstream, ServerThread]
) -> Path:
    """The shared test pool (P(correct) 0.50 / 0.73 / 0.88) behind the answers fake, cascading from the
    cheapest model."""
    directory = tmp_path_factory.mktemp("cascade")
    return shared_pool(directory, answers_server[1].url, UPSTREAM_KEY_ENV, routing={"cascade": CASCADE})


def ask(gateway: RunningGateway, model: str = "ladder-cascade", **extra: Any) -> tuple[Any, dict[str, str]]:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model=model,
        messages=QUESTION,
        **extra,
    )
    return raw.parse(), dict(raw.headers)


def escalate_once(answers: AnswersUpstream, second: str = "42") -> None:
    """The cheapest rung answers unsure (mean logprob -2.0), the next one sure (-0.1): one escalation."""
    answers.set("small-local", "41", logprob=-2.0)
    answers.set("mid-cloud", second, logprob=-0.1)


def test_a_confident_cheap_answer_is_kept(gateway: RunningGateway, answers: AnswersUpstream) -> None:
    answers.set("small-local", "42", logprob=-0.05)
    completion, headers = ask(gateway)
    assert completion.choices[0].message.content == "42"
    assert completion.choices[0].logprobs is None  # asked for scoring, not by the client: not passed on
    assert answers.asked() == ["small-local"]
    assert answers.seen[0][1]["logprobs"] is True
    assert headers["x-ladder-model"] == "small-local"
    assert headers["x-ladder-cascade"] == "small-local=accepted"
    assert "logprob=-0.0500" in headers["x-ladder-cascade-scores"]
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(SMALL)
    assert "cascade" not in answers.seen[0][1]


def test_an_unsure_answer_escalates_to_the_next_likelier_rung(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    escalate_once(answers)
    completion, headers = ask(gateway)
    assert completion.choices[0].message.content == "42"
    assert answers.asked() == ["small-local", "mid-cloud"]
    assert headers["x-ladder-cascade"] == "small-local=escalated,mid-cloud=accepted"
    assert "small-local: mean logprob -2.000 < -0.5" in headers["x-ladder-cascade-reasons"]
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(SMALL + MID)  # both calls paid
    stages = completion.model_extra["ladder"]["cascade"]["stages"]
    assert [(s["model"], s["accepted"]) for s in stages] == [("small-local", False), ("mid-cloud", True)]
    assert completion.model_extra["ladder"]["cost_usd"] == pytest.approx(SMALL + MID)


def test_the_router_being_sure_ends_the_climb(gateway: RunningGateway, answers: AnswersUpstream) -> None:
    for model in NAMES:
        answers.set(model, "maybe 41", logprob=-3.0)
    _, headers = ask(gateway)
    assert answers.asked() == ["small-local", "mid-cloud", "vision-pro"]
    assert headers["x-ladder-model"] == "vision-pro"
    last = headers["x-ladder-cascade-reasons"].split(" | ")[-1]
    assert last.startswith("vision-pro: router P(correct) 0.8") and last.endswith(">= 0.85")
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(sum(cost(m, words=2) for m in NAMES))


@pytest.mark.parametrize("behaviour", ["ignore", "refuse"])
def test_without_logprobs_an_unsure_router_escalates(
    gateway: RunningGateway, answers: AnswersUpstream, behaviour: str
) -> None:
    answers.set("small-local", "42", logprobs=behaviour)
    answers.set("mid-cloud", "42", logprob=-0.1)
    _, headers = ask(gateway)
    assert headers["x-ladder-model"] == "mid-cloud"
    assert headers["x-ladder-cascade-scores"].startswith("small-local:p=0.")
    assert headers["x-ladder-cascade-scores"].split(",")[0].endswith(";logprob=none")
    assert "no answer signal" in headers["x-ladder-cascade-reasons"]
    if behaviour == "refuse":  # refused with logprobs, asked again without them
        assert answers.asked()[:2] == ["small-local", "small-local"]
        assert "logprobs" not in answers.seen[1][1]


def test_a_held_stream_sends_only_the_accepted_answer(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    escalate_once(answers, "forty two")
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="ladder",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cascade": True},
    )
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "forty two"
    assert {c.model for c in chunks} == {"mid-cloud"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].model_extra["ladder"]["cascade"]["accepted"] == "mid-cloud"
    assert raw.headers["x-ladder-cascade"] == "small-local=escalated,mid-cloud=accepted"
    assert all(not body.get("stream") for _, body in answers.seen)  # stages are plain calls


def test_one_audit_line_holds_every_stage(
    start_audited: Callable[..., RunningGateway], answers: AnswersUpstream
) -> None:
    gateway = start_audited()
    escalate_once(answers)
    ask(gateway)
    lines = gateway.audit_lines()
    assert len(lines) == 1
    line = lines[0]
    assert line["answered_model"] == "mid-cloud"
    assert line["cost_usd"] == pytest.approx(SMALL + MID)
    assert [s["model"] for s in line["cascade"]["stages"]] == ["small-local", "mid-cloud"]
    assert line["cascade"]["stages"][0]["mean_logprob"] == pytest.approx(-2.0)


def test_each_stage_is_a_span(start_gateway: Callable[..., RunningGateway], answers: AnswersUpstream) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = start_gateway(tracer_provider=provider)
    escalate_once(answers)
    ask(gateway)
    stages = [s for s in exporter.get_finished_spans() if s.name == "ladder.core.cascade.stage"]
    assert [s.attributes["ladder.model"] for s in stages] == ["small-local", "mid-cloud"]  # type: ignore[index]
    upstream_parents = {
        s.parent.span_id for s in exporter.get_finished_spans() if s.name == "ladder.core.upstream"
    }  # type: ignore[union-attr]
    assert upstream_parents == {s.context.span_id for s in stages}  # type: ignore[union-attr]


def test_a_failed_escalation_keeps_the_answer_in_hand(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    answers.set("small-local", "41", logprob=-2.0)
    answers.fail("mid-cloud")
    completion, headers = ask(gateway, extra_body={"models": ["small-local", "mid-cloud"]})
    assert completion.choices[0].message.content == "41"
    assert headers["x-ladder-model"] == "small-local"
    assert "kept: escalation failed" in headers["x-ladder-cascade-reasons"]


def test_a_first_rung_that_fails_everywhere_is_a_502(
    gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    for model in NAMES:
        answers.fail(model)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(gateway)
    assert caught.value.status_code == 502


def test_key_profiles_and_pins_choose_the_mode(
    start_gateway: Callable[..., RunningGateway], answers: AnswersUpstream
) -> None:
    key = "sk-cascading-app-0123456789"
    gateway = start_gateway(key_profiles=[{"name": "cascading", "key": key, "cascade": True}])
    profiled = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    raw = profiled.chat.completions.with_raw_response.create(model="ladder", messages=QUESTION)
    assert raw.headers["x-ladder-cascade"] == "small-local=accepted"
    raw = profiled.chat.completions.with_raw_response.create(
        model="ladder",
        messages=QUESTION,
        extra_body={"cascade": False},
    )
    assert "x-ladder-cascade" not in raw.headers
    _, headers = ask(gateway, model="ladder")  # a key without the profile flag
    assert "x-ladder-cascade" not in headers
    _, headers = ask(gateway, model="mid-cloud", extra_body={"cascade": True})  # a pin never cascades
    assert "x-ladder-cascade" not in headers and headers["x-ladder-model"] == "mid-cloud"


@contextmanager
def gateway_with(router: Router, test_pool: Path, **cascade: Any) -> Iterator[RunningGateway]:
    """A gateway on the same scorer and pool, with these cascade settings changed."""
    routing = router.pool.routing.model_copy(update={"cascade": CascadeConfig(**{**CASCADE, **cascade})})
    pool = router.pool.model_copy(update={"routing": routing})
    changed = router.with_pool(pool)
    settings = load_settings(None, pool=test_pool, api_keys=[API_KEY], retries=0)
    app = create_app(settings, router=changed)
    with ServerThread(app) as server:
        yield RunningGateway(server.url, app, settings)


CascadeGateway = Callable[..., AbstractContextManager[RunningGateway]]


@pytest.fixture()
def cascade_gateway(start_gateway: Callable[..., RunningGateway], router: Router, test_pool: Path) -> CascadeGateway:
    """``with cascade_gateway(**cascade) as gateway``: ``gateway_with`` this test's scorer and pool (asking for
    ``start_gateway`` puts the upstream key in the environment)."""
    return functools.partial(gateway_with, router, test_pool)


@pytest.fixture()
def agreeing_gateway(cascade_gateway: CascadeGateway) -> Iterator[RunningGateway]:
    """A gateway whose pool asks a second opinion on the first rung (the same scorer, one more setting)."""
    with cascade_gateway(agreement=True) as gateway:
        yield gateway


def test_two_agreeing_cheap_answers_are_kept(
    agreeing_gateway: RunningGateway, answers: AnswersUpstream
) -> None:
    """Agreement as the only answer signal: upstreams that return no logprobs."""
    gateway = agreeing_gateway
    answers.set("small-local", "Paris", logprobs="ignore")
    answers.set("mid-cloud", "paris.", logprobs="ignore")
    _, headers = ask(gateway)
    assert headers["x-ladder-model"] == "small-local"
    assert sorted(answers.asked()) == ["mid-cloud", "small-local"]
    assert float(headers["x-ladder-cost-usd"]) == pytest.approx(SMALL + MID)  # the second opinion is paid
    assert headers["x-ladder-cascade-calls"] == "small-local(answer),mid-cloud(second opinion)"

    answers.reset()
    answers.set("small-local", "Paris", logprobs="ignore")
    answers.set("mid-cloud", "Lyon", logprobs="ignore")
    _, headers = ask(gateway)
    assert "a second answer disagrees" in headers["x-ladder-cascade-reasons"]
    assert answers.asked().count("mid-cloud") == 1  # its second opinion is reused as its rung's answer
    assert headers["x-ladder-model"] == "vision-pro"


# small-local's P(correct) 0.50 against vision-pro's 0.88: a router gap of about -0.38
UNSURE = [-0.5, -0.2]


def test_a_second_opinion_is_asked_only_where_the_router_is_unsure(
    cascade_gateway: CascadeGateway, answers: AnswersUpstream
) -> None:
    """``unsure_gap``: inside the band a second opinion decides; outside it the gap decides unread."""
    with cascade_gateway(unsure_gap=UNSURE, second_opinion="vision-pro") as gw:
        answers.set("small-local", "B", logprobs="ignore")
        answers.set("vision-pro", "The answer is (B).", logprobs="ignore")
        completion, headers = ask(gw)
        assert headers["x-ladder-model"] == "small-local" and completion.choices[0].message.content == "B"
        assert headers["x-ladder-cascade-calls"] == "small-local(answer),vision-pro(second opinion)"
        assert "a second answer agrees" in headers["x-ladder-cascade-reasons"]
        assert ";gap=-0.3" in headers["x-ladder-cascade-scores"]
        price_pro = cost("vision-pro", words=4)
        assert float(headers["x-ladder-cost-usd"]) == pytest.approx(SMALL + price_pro)  # both calls paid
        stages = completion.model_extra["ladder"]["cascade"]["stages"]  # type: ignore[index]
        assert stages[0]["router_gap"] == pytest.approx(-0.38, abs=0.03) and stages[0]["agrees"] is True

        answers.reset()
        answers.set("small-local", "B", logprobs="ignore")
        answers.set("vision-pro", "C", logprobs="ignore")
        _, headers = ask(gw)
        assert "a second answer disagrees" in headers["x-ladder-cascade-reasons"]
        # escalated straight to the likeliest model, whose second opinion is its answer (not asked again)
        assert headers["x-ladder-cascade"] == "small-local=escalated,vision-pro=accepted"
        assert answers.asked() == ["small-local", "vision-pro"]

    for band, kept in (([-0.6, -0.4], True), ([-0.3, -0.1], False)):
        answers.reset()
        answers.set("small-local", "B", logprob=-3.0)  # the logprob would escalate: the gap decides first
        answers.set("vision-pro", "C", logprob=-0.1)
        with cascade_gateway(unsure_gap=band) as gw:
            _, headers = ask(gw)
        reason = headers["x-ladder-cascade-reasons"].split(" | ")[0]
        if kept:
            assert answers.asked() == ["small-local"] and reason.endswith(">= -0.4: kept unread")
        else:  # straight to the likeliest model, past the ladder's next rung
            assert answers.asked() == ["small-local", "vision-pro"]
            assert reason.endswith("< -0.3: escalated unread")


def test_pool_settings_from_evaluate_serve_the_plan_it_costed(
    cascade_gateway: CascadeGateway, answers: AnswersUpstream
) -> None:
    """What ``ladder evaluate`` emits for an ``unsure (router)`` plan: the first rung chosen at the plan's
    tolerance, the named second opinion, and escalation to the plan's top rung, whose answer is final even
    where the router deems another model likelier (P(correct) 0.50 / 0.73 / 0.88)."""
    served = {"max_stages": 2, "router_accept_p": 1.0, "logprobs": False}
    # router at tolerance 0.2: mid-cloud (0.73 >= 0.88 - 0.2) answers; gap -0.15 is in the band
    with cascade_gateway(
        first="router", first_tolerance=0.2, unsure_gap=[-0.2, -0.1],
        second_opinion="small-local", escalate_to="vision-pro", **served,
    ) as gw:  # fmt: skip
        answers.set("mid-cloud", "B", logprobs="ignore")
        answers.set("small-local", "C", logprobs="ignore")
        answers.set("vision-pro", "D", logprobs="ignore")
        completion, headers = ask(gw)
        assert headers["x-ladder-cascade-calls"] == (
            "mid-cloud(answer),vision-pro(answer),small-local(second opinion)"
        )
        assert headers["x-ladder-cascade"] == "mid-cloud=escalated,vision-pro=accepted"
        assert completion.choices[0].message.content == "D"
        assert all("logprobs" not in body for _, body in answers.seen)  # the plan reads none
    answers.reset()
    # cheapest first, escalated unread (gap -0.38 < -0.3) to the named top rung: mid-cloud's answer is
    # kept although vision-pro is likelier, as the plan costed it
    with cascade_gateway(first="cheapest", unsure_gap=[-0.3, -0.1], escalate_to="mid-cloud", **served) as gw:
        answers.set("small-local", "B", logprobs="ignore")
        answers.set("mid-cloud", "C", logprobs="ignore")
        completion, headers = ask(gw)
        assert answers.asked() == ["small-local", "mid-cloud"]
        assert headers["x-ladder-model"] == "mid-cloud" and completion.choices[0].message.content == "C"
        assert headers["x-ladder-cascade"] == "small-local=escalated,mid-cloud=accepted"
    answers.reset()
    # a first rung that is the top rung is kept: nothing is asked
    top = {"first": "router", "first_tolerance": 0.0, "unsure_gap": [-0.3, 0.5], "escalate_to": "vision-pro"}
    with cascade_gateway(**top, **served) as gw:
        answers.set("vision-pro", "D", logprobs="ignore")
        _, headers = ask(gw)
        assert answers.asked() == ["vision-pro"] and headers["x-ladder-cascade"] == "vision-pro=accepted"


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        ({"unsure_gap": [-0.5, -0.2], "agreement": True}, "set one of them"),
        ({"unsure_gap": [-0.2, -0.5]}, "lower <= upper"),
        ({"unsure_gap": [-0.5, -0.2], "second_opinion": "gpt-9"}, "not a model of this pool"),
        ({"second_opinion": "mid-cloud"}, "it needs unsure_gap"),
        ({"unsure_gap": [-0.5, -0.2], "escalate_to": "gpt-9"}, "escalate_to 'gpt-9' is not a model"),
        ({"escalate_to": "mid-cloud"}, "it needs unsure_gap"),
        ({"first": "cheapest", "first_tolerance": 0.1}, "it needs first: router"),
    ],
)
def test_unsure_gap_settings_are_checked_with_the_pool(
    test_pool: Path, tmp_path: Path, cascade: dict[str, Any], message: str
) -> None:
    data = yaml.safe_load(test_pool.read_text())
    data["routing"]["cascade"] = {**CASCADE, **cascade}
    bad = tmp_path / "pool.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_pool(bad)


def test_cascade_settings_in_the_pool_file_are_strict(test_pool: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(test_pool.read_text())
    data["routing"]["cascade"]["min_logprob"] = -1  # a typo
    bad = tmp_path / "pool.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="min_logprob"):
        load_pool(bad)


def assert_clean_reply(response: httpx.Response) -> None:
    """No 500: a reply, or an upstream failure (502/504), or a client error in OpenAI's error envelope."""
    assert response.status_code < 500 or response.status_code in (502, 504), response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"message", "type", "param", "code"}


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    body=mutated(chat_conversations()),
    stream=st.booleans(),
    budget=st.one_of(st.none(), st.sampled_from(["1", "50000", "abc", "-1", "1e400"])),
)
def test_hostile_cascade_requests_never_give_500(
    gateway: RunningGateway,
    answers: AnswersUpstream,
    body: dict[str, Any],
    stream: bool,
    budget: str | None,
) -> None:
    body = {**body, "model": "ladder-cascade", **({"stream": True} if stream else {})}
    headers = {
        "authorization": f"Bearer {API_KEY}",
        **({"x-ladder-max-latency-ms": budget} if budget else {}),
    }
    # json.dumps, not json=: a generated body may hold an infinity, and the gateway must answer it with a 400
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=json.dumps(body),
        headers={**headers, "content-type": "application/json"},
        timeout=30,
    )
    assert_clean_reply(response)


@pytest.fixture()
def unsure_gateway(cascade_gateway: CascadeGateway) -> Iterator[RunningGateway]:
    """A gateway whose first rung's answer is checked by a second opinion only inside the unsure band."""
    with cascade_gateway(unsure_gap=UNSURE) as gateway:
        yield gateway


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    body=mutated(chat_conversations()),
    replies=st.lists(
        st.tuples(
            st.text(max_size=40),
            st.floats(-20.0, 0.0),
            st.sampled_from(["yes", "ignore", "refuse"]),
        ),
        min_size=3,
        max_size=3,
    ),
)
def test_the_unsure_band_survives_any_body_and_any_answers(
    unsure_gateway: RunningGateway,
    answers: AnswersUpstream,
    body: dict[str, Any],
    replies: list[tuple[str, float, str]],
) -> None:
    """Whatever the client sends and whatever text the models answer, every reply is a clean one, and a
    completed cascade reports one reason per answering stage."""
    answers.reset()
    for model, (text, logprob, behaviour) in zip(NAMES, replies, strict=True):
        answers.set(model, text, logprob=logprob, logprobs=behaviour)
    response = httpx.post(
        f"{unsure_gateway.url}/v1/chat/completions",
        content=json.dumps({**body, "model": "ladder-cascade"}),
        headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
        timeout=30,
    )
    assert_clean_reply(response)
    if response.status_code < 400:
        verdicts = response.headers["x-ladder-cascade"].split(",")
        assert len(response.headers["x-ladder-cascade-reasons"].split(" | ")) == len(verdicts)
        assert verdicts[-1].endswith("=accepted")
