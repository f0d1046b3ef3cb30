"""The pool file is strict: typos, wrong types, duplicates and missing prices name file and line."""

from pathlib import Path

import pytest

from ladder.core.errors import ConfigError
from ladder.core.policy import PolicyName
from ladder.core.pool import Capability, Locality, load_pool

MODEL = """
  - name: {name}
    upstream: {{base_url: "http://127.0.0.1:9/v1", model: {name}, api_key_env: KEY_{upper}}}
    price: {{input_per_1m: 0.5, output_per_1m: 1.5}}
    context_window: 8192
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def pool_text(*names: str, routing: str = "") -> str:
    models = "".join(MODEL.format(name=n, upper=n.upper().replace("-", "_")) for n in names)
    return f"version: 1\n{routing}models:{models}"


def test_the_shipped_pool_loads_as_a_price_ladder() -> None:
    pool = load_pool(Path(__file__).parents[1] / "pools" / "default.yaml")
    assert 6 <= len(pool.models) <= 10
    assert pool.routing.checkpoint.is_absolute()
    assert any(m.locality is Locality.ON_PREM for m in pool.models)


def test_defaults_fill_in(tmp_path: Path) -> None:
    pool = load_pool(write(tmp_path, pool_text("small", "large")))
    assert pool.names == ("small", "large")
    assert pool.routing.policy is PolicyName.CHEAPEST
    assert pool.model("small").capabilities == frozenset({Capability.TEXT})
    assert pool.model("small").checkpoint_label == "small"


def test_unknown_key_names_file_key_and_line(tmp_path: Path) -> None:
    text = pool_text("a", routing="routing:\n  tolerence: 0.1\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_pool(path)
    assert f"{path}:3: routing.tolerence: unknown key" in str(error.value)


def test_wrong_type_is_reported_at_its_line(tmp_path: Path) -> None:
    text = pool_text("a").replace("context_window: 8192", "context_window: lots")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"pool.yaml:6: models.0.context_window"):
        load_pool(path)


def test_missing_price_is_an_error(tmp_path: Path) -> None:
    text = pool_text("a").replace(", output_per_1m: 1.5", "")
    with pytest.raises(ConfigError, match=r"models.0.price.output_per_1m: required key is missing"):
        load_pool(write(tmp_path, text))


def test_duplicate_model_name_points_at_the_second(tmp_path: Path) -> None:
    path = write(tmp_path, pool_text("a", "b", "a"))
    with pytest.raises(
        ConfigError,
        match=r"pool.yaml:13: models.2.name: duplicate model name 'a' \(first defined on line 3\)",
    ):
        load_pool(path)


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nversion: 1\nmodels: []\n")
    with pytest.raises(ConfigError, match=r"pool.yaml:2: duplicate key 'version'"):
        load_pool(path)


def test_budget_policy_needs_a_target(tmp_path: Path) -> None:
    path = write(tmp_path, pool_text("a", routing="routing:\n  policy: budget\n"))
    with pytest.raises(ConfigError, match="budget_per_1k"):
        load_pool(path)


@pytest.mark.parametrize("content", ["", "models: [", "\xff\xfe"])
def test_empty_broken_or_binary_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "pool.yaml"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"pool\.yaml"):
        load_pool(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_pool(tmp_path / "nope.yaml")
