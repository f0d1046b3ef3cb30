"""Importer for LLMRouter's data (ulab-uiuc/LLMRouter `data/`): dcrouter scores, query tasks, $/1M prices."""

from __future__ import annotations

import math
from pathlib import Path

from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData, RoutingDataBuilder
from ladder.training.importers._common import field, iter_jsonl, read_json, require_dir, text_id

CHARS_PER_TOKEN = 4.0
"""Input tokens are estimated as len(question) / CHARS_PER_TOKEN (about right for English text)."""

ASSUMED_OUTPUT_TOKENS = 256.0
"""The files do not record output lengths; costs assume this many output tokens for every answer."""


def _tasks(queries_jsonl: Path) -> dict[str, str]:
    """query text -> task_name; a query listed under several tasks keeps its first (6 such in the data)."""
    tasks: dict[str, str] = {}
    for line, item in iter_jsonl(queries_jsonl):
        where = f"{queries_jsonl}:{line}"
        tasks.setdefault(field(item, "query", str, where), field(item, "task_name", str, where))
    return tasks


def _prices(prices_json: Path) -> dict[str, tuple[float, float]]:
    """model -> (input, output) USD per 1M tokens, from `default_llm.json`."""
    raw = read_json(prices_json)
    if not isinstance(raw, dict):
        raise DataError(f"{prices_json}: expected a JSON object of models, got {type(raw).__name__}")
    prices: dict[str, tuple[float, float]] = {}
    for model, spec in raw.items():
        where = f"{prices_json}: model {model!r}"
        if not isinstance(spec, dict):
            raise DataError(f"{where}: expected an object with input_price and output_price")
        prices[model] = (
            float(field(spec, "input_price", (int, float), where)),
            float(field(spec, "output_price", (int, float), where)),
        )
    return prices


def _add(
    builder: RoutingDataBuilder,
    json_path: Path,
    tasks: dict[str, str] | None,
    prices: dict[str, tuple[float, float]] | None,
    split: str | None,
) -> None:
    items = read_json(json_path)
    if not isinstance(items, list):
        raise DataError(
            f"{json_path}: expected a JSON list of {{question, scores}}, got {type(items).__name__}"
        )
    for number, item in enumerate(items):
        where = f"{json_path}: item {number}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object, got {type(item).__name__}")
        text = field(item, "question", str, where)
        scores = field(item, "scores", dict, where)
        question_id = text_id(text) if split is None else f"{split}-{text_id(text)}"
        task = tasks.get(text) if tasks is not None else None
        row = builder.question(question_id, text, task=task, split=split, where=where)
        input_tokens = len(text) / CHARS_PER_TOKEN
        for model, score in scores.items():
            if score is None:
                continue
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise DataError(f"{where}: score of {model!r} is not a number: {score!r}")
            cost = math.nan
            if prices is not None and model in prices:
                price_in, price_out = prices[model]
                cost = (input_tokens * price_in + ASSUMED_OUTPUT_TOKENS * price_out) / 1e6
            builder.cell(row, model, float(score), cost_usd=cost, where=where)


def from_llmrouter(
    json_path: Path,
    queries_jsonl: Path | None = None,
    prices_json: Path | None = None,
    split: str | None = None,
) -> RoutingData:
    """LLMRouter's `dcrouter_{train,test}.json`: `[{question, scores: {model: score}}]`.

    - Labels are the scores (0/1, graded in [0, 1] for commongen); a model absent from `scores` is unknown.
    - Task: joined from `default_query_*.jsonl` on `query == question` (first listing wins where a query
      appears under two tasks); None without `queries_jsonl` or without a match.
    - Cost (USD per request), only with `prices_json` (`default_llm.json`, $/1M tokens), is an ESTIMATE:
      input tokens = len(question) / 4 (`CHARS_PER_TOKEN`) and output tokens = 256
      (`ASSUMED_OUTPUT_TOKENS`) for every answer, since the data records no lengths. `output_tokens`
      stays unknown (NaN): the assumption is not passed off as data.
    - Question id: `text_id(question)`, prefixed `"<split>-"` when `split` is given, because the same
      text occurs in both upstream splits (119 questions, 50 of them scored differently).
    """
    builder = RoutingDataBuilder()
    tasks = _tasks(Path(queries_jsonl)) if queries_jsonl is not None else None
    prices = _prices(Path(prices_json)) if prices_json is not None else None
    _add(builder, Path(json_path), tasks, prices, split)
    return builder.build()


def import_llmrouter_dir(directory: Path) -> RoutingData:
    """LLMRouter's `data/` folder: train and test questions (split "train"/"test"), tasks, and estimated
    costs from `default_llm.json` when present (see `from_llmrouter` for the estimate)."""
    directory = require_dir(
        Path(directory),
        "llmrouter",
        (
            "dcrouter_train.json",
            "dcrouter_test.json",
            "default_query_train.jsonl",
            "default_query_test.jsonl",
        ),
    )
    prices_path = directory / "default_llm.json"
    prices = _prices(prices_path) if prices_path.exists() else None
    builder = RoutingDataBuilder()
    for split in ("train", "test"):
        tasks = _tasks(directory / f"default_query_{split}.jsonl")
        _add(builder, directory / f"dcrouter_{split}.json", tasks, prices, split)
    return builder.build()
