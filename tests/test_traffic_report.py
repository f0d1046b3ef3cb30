"""`ladder export-traffic` and `ladder report` on the logs of a real gateway run, and a shifted copy."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import httpx
import pytest
from gateway_support.common import API_KEY, AUTH, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from gateway_support.upstream import FakeUpstream

from ladder.bench.server_thread import ServerThread
from ladder.core.router import Router
from ladder.gateway.app import create_app
from ladder.gateway.settings import load_settings
from tests.support import ladder
from tests.test_cli import assert_clean_error

pytest_plugins = ["gateway_support.fixtures"]

TOPICS = ("algebra", "French grammar", "the Roman empire", "sorting in Python", "tax law", "protein folding")
PROMPTS = [f"Question {i} about {TOPICS[i % len(TOPICS)]}: explain it briefly." for i in range(36)]


@dataclass(frozen=True)
class Traffic:
    audit: Path
    db: Path
    pool: Path
    ids: list[str]
    rated: dict[str, str]  # request id -> the model that answered


@pytest.fixture(scope="module")
def traffic(
    tmp_path_factory: pytest.TempPathFactory,
    test_pool: Path,
    router: Router,
    upstream_server: tuple[FakeUpstream, ServerThread],
) -> Iterator[Traffic]:
    """One real gateway run: routed chats (one failing over), thumbs and scores on some of them."""
    upstream_server[0].reset()
    directory = tmp_path_factory.mktemp("traffic")
    audit, db = directory / "audit.jsonl", directory / "traffic.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
        settings = load_settings(
            None,
            pool=test_pool,
            api_keys=[API_KEY],
            audit_log=str(audit),
            audit_prompts=True,
            traffic_db=str(db),
            retries=0,
        )
        app = create_app(settings, router=router)
        ids, rated = [], {}
        with ServerThread(app) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
            for i, prompt in enumerate(PROMPTS + PROMPTS[:3]):  # three questions asked twice
                model = "ladder" if i % 3 else "ladder-0.5"  # two operating points: two chosen models
                reply = client.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": prompt}]},
                )
                assert reply.status_code == 200, reply.text
                ids.append(reply.headers["x-ladder-request-id"])
                rated[ids[-1]] = reply.json()["model"]
            for i, request_id in enumerate(ids):
                if i % 4 == 3:
                    continue  # not every answer gets feedback
                body = {
                    "request_id": request_id,
                    **({"thumbs": "up" if i % 2 else "down"} if i % 5 else {"score": 0.5}),
                }
                assert client.post("/v1/feedback", json=body).status_code == 200
            again = client.post("/v1/feedback", json={"request_id": ids[0], "thumbs": "up"})  # changed its mind
            assert again.status_code == 409  # once per request: the first rating (a score of 0.5) stands
    yield Traffic(audit, db, test_pool, ids, rated)


def test_export_traffic_turns_feedback_into_canonical_rows(traffic: Traffic, tmp_path: Path) -> None:
    out = tmp_path / "traffic.csv"
    result = ladder(
        "export-traffic",
        "--audit",
        str(traffic.audit),
        "--feedback",
        str(traffic.db),
        "--pool",
        str(traffic.pool),
        "--test-fraction",
        "0.3",
        "--out",
        str(out),
        check=True,
    )
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    summary = json.loads(result.stderr[: result.stderr.rindex("}") + 1])
    assert summary["outcomes"] == sum(1 for i in range(len(traffic.ids)) if i % 4 != 3)
    by_text = {(r["question"], r["model"]): r for r in rows}
    first = by_text[(PROMPTS[0], traffic.rated[traffic.ids[0]])]
    # PROMPTS[0] was asked twice: its one rating (a score of 0.5) and the repeat's rating are averaged
    repeat = len(PROMPTS)
    repeat_label = 1.0 if repeat % 2 else 0.0
    if traffic.rated[traffic.ids[repeat]] == traffic.rated[traffic.ids[0]]:
        assert float(first["correct"]) == pytest.approx((0.5 + repeat_label) / 2)
    else:
        assert float(first["correct"]) == 0.5
    assert all(float(r["cost_usd"]) > 0 and float(r["output_tokens"]) > 0 for r in rows)
    assert {r["split"] for r in rows} == {"train", "test"}
    assert len({r["question_id"] for r in rows}) == len({r["question"] for r in rows})
    assert PROMPTS[3] not in {r["question"] for r in rows}  # asked once, never rated


def test_export_without_stored_prompts_says_so(traffic: Traffic, tmp_path: Path) -> None:
    bare = tmp_path / "audit.jsonl"
    lines = [json.loads(line) for line in traffic.audit.read_text(encoding="utf-8").splitlines()]
    bare.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "prompt"}) + "\n" for r in lines))
    empty_db = tmp_path / "copy.db"
    empty_db.write_bytes(traffic.db.read_bytes())
    import sqlite3

    with sqlite3.connect(empty_db) as conn:
        conn.execute("UPDATE decisions SET prompt = NULL")
    result = ladder(
        "export-traffic", "--audit", str(bare), "--feedback", str(empty_db), "--out", str(tmp_path / "x.csv")
    )
    assert_clean_error(result, "no labelled traffic", "audit_prompts was off")


def run_report(audit: Path, baseline: Path, folder: Path, *options: str) -> tuple[CompletedProcess[str], Path, Path]:
    """``ladder report`` of ``audit`` against ``baseline`` (at least 10 requests), with its JSON and PNG files."""
    out, png = folder / "report.json", folder / "report.png"
    command = ["report", "--audit", str(audit), "--baseline", str(baseline), "--json", str(out), "--plot", str(png)]
    return ladder(*command, "--min-requests", "10", *options), out, png


def test_report_on_the_same_traffic_finds_no_drift(traffic: Traffic, tmp_path: Path) -> None:
    result, out, png = run_report(traffic.audit, traffic.audit, tmp_path, "--bucket", "hour")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["requests"] == len(traffic.ids)
    assert report["drift"]["share_tvd"] == 0 and report["drift"]["max_psi"] < 1e-9
    assert sum(report["distribution"].values()) == pytest.approx(1.0)
    assert report["baseline_cost_usd"] > report["cost_usd"] > 0  # routing saves against the priciest model
    assert sum(b["requests"] for b in report["timeline"]) == len(traffic.ids)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def shifted(audit: Path, out: Path) -> Path:
    """The same requests a day later, but new traffic that the router finds hard: P(correct) down, the
    cheapest model chosen every time."""
    lines = []
    for line in audit.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record["time"] = record["time"].replace("2026-", "2027-", 1)
        record["p_correct"] = {name: round(p * 0.6, 6) for name, p in record["p_correct"].items()}
        record["chosen_model"] = min(record["expected_cost_usd"], key=record["expected_cost_usd"].get)
        lines.append(json.dumps(record))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def test_report_on_shifted_traffic_exits_non_zero(traffic: Traffic, tmp_path: Path) -> None:
    current = shifted(traffic.audit, tmp_path / "shifted.jsonl")
    result, out, png = run_report(current, traffic.audit, tmp_path, "--drift-threshold", "0.2")
    assert result.returncode == 1, result.stderr
    assert "DRIFT" in result.stdout
    drift = json.loads(out.read_text())["drift"]
    assert drift["drifted"] and drift["max_psi"] > 0.25 and drift["max_ks"] > 0.5
    assert png.is_file()
    # below the minimum number of requests the same shift is reported but not acted on
    quiet = ladder("report", "--audit", str(current), "--baseline", str(traffic.audit), "--json", str(out))
    assert quiet.returncode == 0 and "not assessed" in quiet.stdout


def test_report_bad_input(traffic: Traffic, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text(traffic.audit.read_text(encoding="utf-8").splitlines()[0] + "\n{not json\n{}\n")
    assert_clean_error(ladder("report", "--audit", str(broken)), f"{broken}:2", "not a JSON audit record")
    assert_clean_error(
        ladder(
            "report",
            "--audit",
            str(traffic.audit),
            "--checkpoint",
            str(traffic.pool.parent / "checkpoint"),
            "--pool",
            str(traffic.pool),
        ),
        "no calibration sample",
    )
    assert_clean_error(ladder("report", "--audit", str(tmp_path / "missing.jsonl")), "no such audit log")


def test_export_sources(traffic: Traffic, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    only_shadow = ladder(
        "export-traffic", "--feedback", str(traffic.db), "--pool", str(traffic.pool), "--sources", "shadow",
        "--out", str(out),
    )  # fmt: skip
    assert_clean_error(only_shadow, "no labelled traffic", "0 outcomes")
    bad = ladder("export-traffic", "--feedback", str(traffic.db), "--sources", "votes", "--out", str(out))
    assert_clean_error(bad, "--sources")


def test_report_against_the_shipped_checkpoints_calibration_sample(tmp_path: Path) -> None:
    """Traffic that looks like the calibration sample passes; the same traffic made harder does not."""
    import numpy as np

    from ladder.core.checkpoint import Checkpoint
    from ladder.core.policy import ChoiceOptions, choose
    from ladder.core.pool import load_pool
    from ladder.core.router import default_pool_path

    pool = load_pool(default_pool_path())
    reference = Checkpoint.load(pool.routing.checkpoint).reference_p.astype(np.float64)
    label_of = {m.name: m.checkpoint_label for m in pool.models}
    names = list(pool.names)
    columns = [Checkpoint.load(pool.routing.checkpoint).models.index(label_of[n]) for n in names]
    costs = np.array([m.price.input_per_1m for m in pool.models])

    def window(p: np.ndarray, path: Path) -> Path:
        chosen = choose(p, costs, ChoiceOptions(tolerance=0.05)).model
        lines = [
            {
                "time": f"2026-01-01T{i % 24:02d}:00:00+00:00",
                "request_id": f"r{i}",
                "endpoint": "route",
                "chosen_model": names[chosen[i]],
                "tolerance": 0.05,
                "p_correct": dict(zip(names, map(float, p[i]), strict=True)),
                "expected_cost_usd": dict(zip(names, map(float, costs), strict=True)),
            }
            for i in range(len(p))
        ]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        return path

    same = window(reference[:, columns], tmp_path / "same.jsonl")
    out = tmp_path / "same.json"
    assert ladder("report", "--audit", str(same), "--json", str(out)).returncode == 0
    drift = json.loads(out.read_text())["drift"]
    assert drift["share_tvd"] < 1e-9 and drift["max_psi"] < 1e-6 and "checkpoint" in drift["reference"]
    harder = window(reference[:, columns] ** 3, tmp_path / "harder.jsonl")
    result = ladder("report", "--audit", str(harder), "--json", str(out))
    assert result.returncode == 1 and json.loads(out.read_text())["drift"]["max_psi"] > 0.25
