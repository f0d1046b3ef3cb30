"""`ladder collect` and the LLM judge never send a sensitive question to a cloud model (attack tests).

Two loopback stubs record every byte they receive: one stands in for a cloud upstream, one for an on-prem
one. The marker is hidden the ways a person still reads it (full-width, a zero-width space inside, a
ligature, a later turn of a conversation) or the question is marked ``"sensitive": true`` in the file.
"""

from __future__ import annotations

import contextlib
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from collect_support.pool_server import FakePool, fake_pool_app
from starlette.types import ASGIApp, Receive, Scope, Send

from ladder.bench.server_thread import ServerThread
from ladder.core.locality import Refusal, may_receive
from ladder.core.pool import load_pool
from ladder.training.collect import AnswerStore
from tests.support import ladder

MARKER = "bluefinch"
FILE_MARKED = "What is the launch date of the spring catalogue?"
QUESTIONS: list[dict[str, Any]] = [
    {"id": "plain", "question": "Summarise the Bluefinch contract."},
    {"id": "full-width", "question": "Summarise the Ｂｌｕｅｆｉｎｃｈ contract."},
    {"id": "zero-width", "question": "Summarise the Blue\u200bfinch contract."},
    {"id": "ligature", "question": "Summarise the Blue\ufb01nch contract."},
    {
        "id": "multi-turn",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "I have a question about a contract."},
            {"role": "assistant", "content": "Go ahead."},
            {"role": "user", "content": "Which clauses of BLUE\u00adFINCH expire first?"},
        ],
    },
    {"id": "file-marked", "question": FILE_MARKED, "sensitive": True},
    {"id": "ordinary-1", "question": "What is 2 + 2?"},
    {"id": "ordinary-2", "question": "Name a prime number above 10."},
]
SENSITIVE = {"plain", "full-width", "zero-width", "ligature", "multi-turn", "file-marked"}
VERDICT = '{"correct": true, "reason": "fine"}'  # a valid answer and a valid verdict alike
PREFERENCE = '{"winner": "tie", "reason": "alike"}'


def reply(model: str, messages: list[dict[str, Any]]) -> str:
    return PREFERENCE if "Which answer is better?" in str(messages[-1].get("content")) else VERDICT


def read_as_a_person(raw: bytes) -> str:
    """What a request (head, blank line, body) says once the body's JSON escapes are decoded, NFKC folded and
    format characters dropped."""
    text = raw.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        text += "\n" + json.dumps(json.loads(raw.partition(b"\n\n")[2]), ensure_ascii=False)
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").casefold()


@dataclass
class Recorder:
    """An ASGI wrapper that keeps every byte of every request: path, headers and body."""

    app: ASGIApp
    seen: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = [str(scope.get("path", "")).encode(), *(k + b": " + v for k, v in scope.get("headers", []))]
        body: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        try:
            await self.app(scope, recording, send)
        finally:
            self.seen.append(b"\n".join(head) + b"\n\n" + b"".join(body))

    def read(self) -> list[str]:
        return [read_as_a_person(raw) for raw in self.seen]


@dataclass
class Stubs:
    cloud: Recorder
    on_prem: Recorder
    pool_file: Path
    questions: Path


def _model(name: str, url: str, locality: str) -> list[str]:
    return [
        f"  - name: {name}",
        "    upstream:",
        f"      base_url: {url}/{name}/v1",
        f"      model: fake-{name}",
        "    price: {input_per_1m: 1.0, output_per_1m: 2.0}",
        "    context_window: 8192",
        f"    locality: {locality}",
    ]


@pytest.fixture
def stubs(tmp_path: Path) -> Iterator[Stubs]:
    cloud = Recorder(fake_pool_app(FakePool(reply)))
    on_prem = Recorder(fake_pool_app(FakePool(reply)))
    with ServerThread(cloud) as cloud_server, ServerThread(on_prem) as on_prem_server:
        lines = ["version: 1", "routing:", "  checkpoint: ckpt", f"sensitive_patterns: ['{MARKER}']", "models:"]
        lines += _model("cloud", cloud_server.url, "cloud") + _model("local", on_prem_server.url, "on-prem")
        lines += _model("cloud-judge", cloud_server.url, "cloud")
        lines += _model("local-judge", on_prem_server.url, "on-prem")
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        questions = tmp_path / "questions.jsonl"
        questions.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
        yield Stubs(cloud, on_prem, pool_file, questions)


def never_told(recorder: Recorder) -> None:
    for text in recorder.read():
        assert '"messages"' in text  # the body was decoded: escapes (\\uff22) cannot hide the marker
        assert MARKER not in text
        assert FILE_MARKED.casefold() not in text


def collect(stubs: Stubs, store: Path, *extra: str, models: str = "cloud,local") -> Any:
    return ladder(
        "collect",
        "--pool",
        str(stubs.pool_file),
        "--questions",
        str(stubs.questions),
        "--store",
        str(store),
        "--models",
        models,
        "--retries",
        "0",
        "--timeout",
        "10",
        *extra,
    )


def test_the_rule(stubs: Stubs) -> None:
    pool = load_pool(stubs.pool_file)
    cloud, local = pool.model("cloud"), pool.model("local")
    assert may_receive(cloud, False) and may_receive(local, False) and may_receive(local, True)
    assert not may_receive(cloud, True)
    assert pool.sensitive_patterns == (MARKER,)


def test_collect_never_sends_a_sensitive_question_to_a_cloud_model(stubs: Stubs, tmp_path: Path) -> None:
    store = tmp_path / "answers.db"
    result = collect(stubs, store, "--json", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    never_told(stubs.cloud)
    assert len(stubs.cloud.seen) == len(QUESTIONS) - len(SENSITIVE)
    told = "\n".join(stubs.on_prem.read())
    assert MARKER in told and FILE_MARKED.casefold() in told
    answers = AnswerStore(store, create=False)
    stored = {(a.question_id, a.model): a for a in answers.answers()}
    answers.close()
    assert all(stored[(q, "local")].ok for q in SENSITIVE)
    assert not [q for q in SENSITIVE if (q, "cloud") in stored]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["skipped"] == len(SENSITIVE)
    assert report["models"]["cloud"]["skipped"] == {Refusal.SENSITIVE.value: len(SENSITIVE)}
    assert report["models"]["cloud"]["stopped"] is None and report["models"]["cloud"]["errors"] == {}
    assert "skipped (never sent, not a failure): sensitive: on-prem models only" in result.stderr

    before = len(stubs.cloud.seen)
    again = collect(stubs, store)  # resuming skips them again and sends nothing
    assert again.returncode == 0, again.stderr
    assert len(stubs.cloud.seen) == before
    never_told(stubs.cloud)


def test_the_dry_run_counts_the_skips(stubs: Stubs, tmp_path: Path) -> None:
    result = collect(stubs, tmp_path / "answers.db", "--dry-run")
    assert result.returncode == 0, result.stderr
    never_told(stubs.cloud)
    estimate = json.loads(result.stdout)
    assert sum(estimate["skipped"]["cloud"].values()) >= 1
    assert set(estimate["skipped"]["cloud"]) == {Refusal.SENSITIVE.value}
    assert estimate["skipped"]["local"] == {}


@pytest.mark.parametrize("pairwise", [False, True])
def test_a_cloud_judge_never_sees_a_sensitive_question(stubs: Stubs, tmp_path: Path, pairwise: bool) -> None:
    store = tmp_path / "answers.db"
    # pairs need two answers to a sensitive question: two on-prem models answer them (one also judges)
    answering = "local,local-judge" if pairwise else "cloud,local"
    assert collect(stubs, store, models=answering).returncode == 0
    stubs.cloud.seen.clear()
    stubs.on_prem.seen.clear()
    mode = ["--pairwise", "--allow-self-judge"] if pairwise else []
    report_file = tmp_path / "judge.json"
    judged = ladder(
        "judge", "--store", str(store), "--judge", "llm", "--pool", str(stubs.pool_file),
        "--judge-model", "cloud-judge", "--out", str(tmp_path / "labels.csv"), "--json", str(report_file), *mode,
    )  # fmt: skip
    assert judged.returncode == 0, judged.stderr
    never_told(stubs.cloud)
    assert stubs.cloud.seen  # the ordinary questions were judged
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["not_judged"] == {Refusal.SENSITIVE.value: len(SENSITIVE)}
    assert "left unjudged (unknown): sensitive: on-prem models only" in judged.stderr

    judged = ladder(
        "judge", "--store", str(store), "--judge", "llm", "--pool", str(stubs.pool_file),
        "--judge-model", "local-judge", "--out", str(tmp_path / "local.csv"), "--json", str(report_file), *mode,
    )  # fmt: skip
    assert judged.returncode == 0, judged.stderr
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["not_judged"] == {}
    told = "\n".join(stubs.on_prem.read())
    assert MARKER in told and FILE_MARKED.casefold() in told
