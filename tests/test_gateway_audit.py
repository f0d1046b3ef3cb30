"""The audit log: one JSON line per scored request, no prompt text unless enabled, and then redacted."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, RunningGateway, streamed_lines
from gateway_support.pool import NAMES
from gateway_support.upstream import FakeUpstream

from ladder.core.decision_record import DecisionRecord
from ladder.gateway.audit import AuditLog
from ladder.training.traffic import read_audit

pytest_plugins = ["gateway_support.fixtures"]

SECRET_PROMPT = "Email jane.doe@example.com about card 4111 1111 1111 1111, key sk-abcdefghijklmnop"


def test_one_line_per_decision_without_prompt_text(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_audited()
    upstream.set("vision-pro", "fail")
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="ladder-0", messages=[{"role": "user", "content": SECRET_PROMPT}]
    )
    httpx.post(
        f"{gateway.url}/v1/route",
        headers=AUTH,
        json={"prompt": SECRET_PROMPT},
    )
    first, second = gateway.audit_lines(2)
    assert first["request_id"] == raw.headers["x-ladder-request-id"]
    assert first["chosen_model"] == "vision-pro" and first["answered_model"] == "mid-cloud"
    assert set(first["p_correct"]) == set(NAMES)  # type: ignore[arg-type]
    assert first["cost_usd"] and first["baseline_cost_usd"] and first["latency_ms"]
    assert first["fallback"][0]["model"] == "vision-pro"  # type: ignore[index]
    assert "time" in first and "routing_ms" in first
    assert second["endpoint"] == "route"
    assert "jane" not in gateway.audit_path.read_text(encoding="utf-8") and "prompt" not in first


def test_requests_refused_before_a_decision_have_their_line(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    """A malformed body, a missing key, a body that is not JSON: each one line, with its status and code."""
    gateway = start_audited()
    sent = [
        httpx.post(
            f"{gateway.url}/v1/chat/completions", headers=AUTH, json={"extra_body": {"messages": "x"}}
        ),
        httpx.post(f"{gateway.url}/v1/messages", json={"model": "ladder", "max_tokens": 8, "messages": []}),
        httpx.post(f"{gateway.url}/v1/route", headers=AUTH, content=b"{not json"),
        httpx.get(f"{gateway.url}/v1/models", headers=AUTH),  # not a scored request: no line
    ]
    assert [r.status_code for r in sent] == [400, 401, 400, 200]
    audited = gateway.audit_lines()
    assert [a["endpoint"] for a in audited] == ["chat", "messages", "route"]
    assert [a["status"] for a in audited] == [400, 401, 400]
    for line, response in zip(audited, sent, strict=False):
        assert line["chosen_model"] is None and line["answered_model"] is None
        error = response.json()["error"]  # OpenAI's envelope has a code; Anthropic's only a type
        assert line["error"] and line["error"] == error.get("code", line["error"])
        assert line["request_id"] == response.headers["x-ladder-request-id"]
    assert upstream.seen == []


def test_prompts_are_redacted_when_enabled(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    gateway = start_audited(audit_prompts=True)
    gateway.openai().chat.completions.create(
        model="ladder", messages=[{"role": "user", "content": SECRET_PROMPT}]
    )
    (record,) = gateway.audit_lines()
    prompt = str(record["prompt"])
    assert prompt.startswith("Email [REDACTED] about card [REDACTED], key [REDACTED]")
    assert "example.com" not in prompt and "4111" not in prompt and "sk-abc" not in prompt


def test_redaction_patterns_are_configurable() -> None:
    log = AuditLog(None, include_prompts=True, redactions=[r"Project \w+"])
    assert log.redact("about Project Falcon today") == "about [REDACTED] today"
    assert not log.enabled


def test_chat_and_messages_streams_without_upstream_usage_are_priced_alike(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    """An upstream that reports no usage (llama.cpp): both stream kinds estimate it and record one cost."""
    gateway = start_audited()
    upstream.set("small-local", "no-usage")
    turn = [{"role": "user", "content": "How many moons has Mars?"}]
    chat_body = {"model": "small-local", "messages": turn, "stream": True}
    chat_lines = streamed_lines(f"{gateway.url}/v1/chat/completions", chat_body)
    message_body = {"model": "small-local", "max_tokens": 64, "messages": turn, "stream": True}
    message_lines = streamed_lines(f"{gateway.url}/v1/messages", message_body)
    chat, messages = gateway.audit_lines(2)
    assert chat["endpoint"] != messages["endpoint"]
    assert chat["usage"] == messages["usage"] and chat["usage"]["completion"] > 0  # type: ignore[index]
    assert chat["cost_usd"] == messages["cost_usd"] and float(chat["cost_usd"]) > 0  # type: ignore[arg-type]
    assert chat["baseline_cost_usd"] == messages["baseline_cost_usd"]
    deltas = [json.loads(line[6:]) for line in message_lines if line.startswith("data: ")]
    ladder = next(d["ladder"] for d in deltas if d.get("type") == "message_delta")
    assert ladder["usage_estimated"] is True and ladder["cost_usd"] == messages["cost_usd"]
    assert any(line.startswith(": ladder ") and "usage_estimated" in line for line in chat_lines)


def test_the_audit_line_reads_back_as_the_decision_record(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream
) -> None:
    """Written by the gateway, read with the one type: the same record, and the response's ``ladder``
    summary tells the same decision; a refused request's line is a record too, with no decision."""
    gateway = start_audited()
    upstream.set("vision-pro", "fail")
    chat = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={**AUTH, "x-request-id": "client-7"},
        json={"model": "ladder-0", "messages": [{"role": "user", "content": "Name a prime."}]},
    )
    refused = httpx.post(f"{gateway.url}/v1/route", headers=AUTH, content=b"{not json")
    assert (chat.status_code, refused.status_code) == (200, 400)
    written = gateway.audit_lines(2)
    assert [line["record_version"] for line in written] == [1, 1]

    (row,) = read_audit([gateway.audit_path])  # the refused request's line holds no decision
    record = row.record
    assert record == DecisionRecord.model_validate({k: v for k, v in written[0].items() if k != "time"})
    assert record.to_line() == {k: v for k, v in written[0].items() if k != "time"}
    assert row.request_id == chat.headers["x-ladder-request-id"] and record.correlation_id == "client-7"
    assert (record.endpoint, record.chosen_model, record.rated_model) == ("chat", "vision-pro", "mid-cloud")
    assert record.fallback is not None and [a.model for a in record.fallback] == ["vision-pro"]
    assert record.usage is not None and record.cost_usd is not None and record.latency_ms is not None
    summary = chat.json()["ladder"]
    assert summary["routed_model"] == record.chosen_model and summary["p_correct"] == record.p_correct
    assert summary["expected_costs_usd"] == record.expected_cost_usd
    assert summary["expected_cost_usd"] == record.expected_cost_usd["vision-pro"]  # type: ignore[index]

    refusal = DecisionRecord.model_validate({k: v for k, v in written[1].items() if k != "time"})
    assert not refusal.decided and refusal.status == 400 and refusal.rated_model is None


REJECTED_REQUESTS = [
    ("/v1/chat/completions", {"model": "ladder", "messages": [{"role": "user", "content": "Say hi"}]}),
    ("/v1/chat/completions", {"model": "ladder", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}),
    ("/v1/messages", {"model": "ladder", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi"}]}),
    ("/v1/responses", {"model": "ladder", "input": "Say hi"}),
]


@pytest.mark.parametrize(("path", "body"), REJECTED_REQUESTS, ids=["chat", "chat-stream", "messages", "responses"])
def test_an_upstream_rejection_is_recorded_with_its_decision(
    start_audited: Callable[..., RunningGateway], upstream: FakeUpstream, path: str, body: dict[str, object]
) -> None:
    """An upstream that refuses the request itself (400): the client gets the upstream's error, and the audit
    line keeps the decision (chosen model, scores) and names the error, on every endpoint, plain and streamed."""
    gateway = start_audited()
    for name in NAMES:
        upstream.set(name, "reject")
    answer = httpx.post(f"{gateway.url}{path}", headers={**AUTH, "x-api-key": API_KEY}, json=body)
    assert answer.status_code == 400, answer.text
    (line,) = gateway.audit_lines()
    assert line["request_id"] == answer.headers["x-ladder-request-id"]
    assert line["chosen_model"] in NAMES and set(line["p_correct"]) == set(NAMES)  # type: ignore[arg-type]
    assert line["error"] == "UpstreamRejectedError" and line["answered_model"] is None
