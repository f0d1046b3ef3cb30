"""Strict YAML loading that remembers where every key stood, so errors can name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ladder.core.errors import ConfigError

Location = tuple[int | str, ...]
T = TypeVar("T", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _index_lines(node: yaml.Node, path: Location, lines: dict[Location, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            _index_lines(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines)


def line_of(lines: dict[Location, int], location: Location) -> int | None:
    """The line of the deepest known prefix of ``location`` (pydantic may point inside a value)."""
    for end in range(len(location), -1, -1):
        if location[:end] in lines:
            return lines[location[:end]]
    return None


def config_text(path: Path) -> str:
    """A config file's UTF-8 text; ConfigError when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc


def read_yaml(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse ``path`` and return its data with a map from key path to 1-based line number."""
    try:
        text = config_text(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: {exc.problem or exc}") from exc
    lines: dict[Location, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def describe_validation_error(path: Path, error: ValidationError, lines: dict[Location, int]) -> str:
    """Render pydantic's errors as ``file:line: key: message`` lines."""
    rendered = []
    for item in error.errors():
        location = tuple(item["loc"])
        key = ".".join(str(part) for part in location) or "(top level)"
        line = line_of(lines, location)
        where = f"{path}:{line}" if line is not None else str(path)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        rendered.append(f"{where}: {key}: {message}")
    return "\n".join(rendered)


def validate_model(path: Path, data: Any, lines: dict[Location, int], model: type[T]) -> T:
    """Validate parsed YAML into ``model``, raising ConfigError with file, key and line."""
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, lines)) from exc
