"""The playground page at ``GET /``, rendered by headless Chromium against a real gateway on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cdp import Browser, Page
from gateway_support.common import API_KEY, RunningGateway
from gateway_support.pool import NAMES

pytest_plugins = ["gateway_support.fixtures"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed: run scripts/install_chromium.sh"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,860",
)
# For one-shot renders: debounce timers run in virtual time, which pending fetches pause.
DUMP_FLAGS = ("--virtual-time-budget=10000",)
PROMPT = "What is the capital of France?"
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"})


@dataclass
class Node:
    """An element of the rendered DOM: its tag, attributes and all the text inside it."""

    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Dom(HTMLParser):
    """The elements of a serialized page, in document order (enough to query by id, class or attribute)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.nodes: list[Node] = []
        self._open: list[Node] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.nodes.append(node)
        if tag not in VOID:
            self._open.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for node in self._open:
            node.parts.append(data)

    def by_id(self, element_id: str) -> Node:
        return next(n for n in self.nodes if n.attrs.get("id") == element_id)

    def by_class(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.classes]


def chromium(tmp_path: Path, url: str, *action: str) -> str:
    """Run headless Chromium with a fresh profile on ``url``; its stdout (the DOM for ``--dump-dom``)."""
    assert CHROMIUM is not None
    profile = Path(tmp_path, f"profile-{len(list(tmp_path.glob('profile-*')))}")
    command = [CHROMIUM, *CHROMIUM_FLAGS, *DUMP_FLAGS, f"--user-data-dir={profile}", *action, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def render(tmp_path: Path, url: str) -> Dom:
    return Dom(chromium(tmp_path, url, "--dump-dom"))


def page_url(gateway: RunningGateway, fragment: str = "", **query: Any) -> str:
    return f"{gateway.url}/?{urlencode(query)}" + (f"#{fragment}" if fragment else "")


def decide(
    gateway: RunningGateway, tolerance: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The decision the page should show, asked of ``/v1/route`` directly."""
    body = {"model": "ladder", "prompt": PROMPT, "tolerance": tolerance}
    response = httpx.post(f"{gateway.url}/v1/route", json=body, headers=headers or {}, timeout=30)
    response.raise_for_status()
    decision: dict[str, Any] = response.json()
    return decision


def assert_shows(dom: Dom, decision: dict[str, Any]) -> None:
    """The page shows this decision: the chosen model, one bar per pool model, the threshold and the cost."""
    assert dom.by_id("app").attrs["data-state"] == "ready", dom.by_id("error").text
    assert dom.by_id("chosen-model").text == decision["model"]
    rows = dom.by_class("bar-row")
    assert sorted(r.attrs["data-model"] for r in rows) == sorted(NAMES)
    assert [r.attrs["data-model"] for r in rows if r.attrs["data-chosen"] == "true"] == [decision["model"]]
    for row in rows:
        p_correct = float(row.attrs["data-p"])
        assert p_correct == pytest.approx(decision["p_correct"][row.attrs["data-model"]], abs=1e-6)
        assert f"{p_correct:.3f}" in row.text
    assert len(dom.by_class("fill")) == len(NAMES)
    assert len(dom.by_class("tline")) == len(NAMES)  # the threshold line crosses every bar
    threshold = decision["threshold"]
    assert dom.by_id("bars").attrs["data-threshold"] == f"{threshold:.4f}"
    assert dom.by_id("threshold-value").text == f"{threshold:.3f}"
    assert dom.by_id("tolerance-value").text == f"{decision['tolerance']:.2f}"
    assert dom.by_id("cost-request").text.startswith("$")
    priciest = max(decision["candidates"], key=lambda c: c["expected_cost_usd"])
    saving = priciest["expected_cost_usd"] - decision["expected_cost_usd"]
    assert float(dom.by_id("saving").attrs["data-usd"]) == pytest.approx(saving)
    assert f"vs {priciest['name']}" in dom.by_id("saving-1k").text


def test_the_page_shows_every_model_against_the_threshold_and_the_choice(
    start_gateway: Callable[..., RunningGateway], tmp_path: Path
) -> None:
    gateway = start_gateway(auth_disabled=True)
    url = page_url(gateway, prompt=PROMPT, tolerance="0.10")
    assert_shows(render(tmp_path, url), decide(gateway, 0.10))

    shot = tmp_path / "playground.png"
    chromium(tmp_path, url, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_a_wider_tolerance_lowers_the_threshold_and_may_choose_a_cheaper_model(
    start_gateway: Callable[..., RunningGateway], tmp_path: Path
) -> None:
    gateway = start_gateway(auth_disabled=True)
    strict, loose = decide(gateway, 0.0), decide(gateway, 0.5)
    strict_dom = render(tmp_path, page_url(gateway, prompt=PROMPT, tolerance="0"))
    loose_dom = render(tmp_path, page_url(gateway, prompt=PROMPT, tolerance="0.5"))
    assert_shows(strict_dom, strict)
    assert_shows(loose_dom, loose)
    shown = [float(dom.by_id("bars").attrs["data-threshold"]) for dom in (strict_dom, loose_dom)]
    assert shown[0] - shown[1] == pytest.approx(0.5, abs=1e-3)
    assert strict["model"] == "vision-pro" and loose["model"] == "small-local"  # best vs cheapest


def test_a_sensitive_request_shows_the_cloud_models_excluded(
    start_gateway: Callable[..., RunningGateway], tmp_path: Path
) -> None:
    gateway = start_gateway(auth_disabled=True)
    decision = decide(gateway, 0.05, {"x-ladder-sensitive": "true"})
    dom = render(tmp_path, page_url(gateway, prompt=PROMPT, tolerance="0.05", sensitive="1"))
    assert_shows(dom, decision)
    assert dom.by_id("chosen-model").text == "small-local"  # the only on-prem model
    excluded = {r.attrs["data-model"] for r in dom.by_class("bar-row") if r.attrs["data-eligible"] == "false"}
    assert excluded == {"mid-cloud", "vision-pro"}
    assert "on-prem" in dom.by_id("excluded-note").text


def test_with_auth_on_the_page_asks_for_a_key_and_uses_one_given_in_the_link(
    start_gateway: Callable[..., RunningGateway], tmp_path: Path
) -> None:
    gateway = start_gateway()
    without = render(tmp_path, page_url(gateway, prompt=PROMPT, tolerance="0.10"))
    assert without.by_id("app").attrs["data-state"] == "error"
    assert "API key" in without.by_id("error").text
    assert "API key needed" in without.by_id("status").text

    headers = {"Authorization": f"Bearer {API_KEY}"}
    with_key = render(tmp_path, page_url(gateway, f"key={API_KEY}", prompt=PROMPT, tolerance="0.10"))
    assert_shows(with_key, decide(gateway, 0.10, headers))
    assert API_KEY[-4:] in with_key.by_id("key-state").text


def route_calls(page: Page) -> list[dict[str, Any]]:
    """The bodies of the page's ``POST /v1/route`` calls since ``Network.enable``."""
    sent = page.requests(lambda r: r["url"].endswith("/v1/route") and r["method"] == "POST")
    return [json.loads(r["postData"]) for r in sent]


def test_typing_and_sliding_are_debounced_and_update_the_decision(
    start_gateway: Callable[..., RunningGateway], tmp_path: Path
) -> None:
    gateway = start_gateway(auth_disabled=True)
    url = page_url(gateway, tolerance="0.10")
    assert CHROMIUM is not None
    with Browser(CHROMIUM, CHROMIUM_FLAGS, tmp_path / "profile-cdp", url) as page:
        page.wait_for("document.getElementById('status')?.classList.contains('ok')")
        assert page.evaluate("document.getElementById('app').dataset.state") == "idle"  # no prompt yet
        page.send("Network.enable")

        page.evaluate("document.getElementById('prompt').focus()")
        for char in PROMPT:  # keystrokes a few milliseconds apart, well inside the 250 ms debounce
            page.send("Input.insertText", text=char)
        page.wait_for("document.getElementById('app').dataset.state === 'ready'")
        typed = route_calls(page)
        assert 1 <= len(typed) < len(PROMPT) // 4, typed  # not one request per keystroke
        assert typed[-1]["prompt"] == PROMPT and typed[-1]["tolerance"] == pytest.approx(0.10)
        assert (
            page.evaluate("document.getElementById('chosen-model').textContent")
            == decide(gateway, 0.1)["model"]
        )

        loose = decide(gateway, 0.40)
        page.evaluate("document.getElementById('tolerance').focus()")
        for _ in range(30):  # 0.10 -> 0.40 in slider steps of 0.01
            for kind in ("keyDown", "keyUp"):
                page.send("Input.dispatchKeyEvent", type=kind, key="ArrowRight", code="ArrowRight",
                          windowsVirtualKeyCode=39)  # fmt: skip
        page.wait_for(f"document.getElementById('bars').dataset.threshold === '{loose['threshold']:.4f}'")
        slid = route_calls(page)[len(typed) :]
        assert 1 <= len(slid) < 30 // 4, slid
        assert slid[-1]["tolerance"] == pytest.approx(0.40)
        assert page.evaluate("document.getElementById('chosen-model').textContent") == loose["model"]
        assert page.evaluate("document.getElementById('tolerance-value').textContent") == "0.40"
        assert "tolerance=0.40" in page.evaluate("location.search")  # the address is shareable
        page.screenshot(tmp_path / "playground-interactive.png")
