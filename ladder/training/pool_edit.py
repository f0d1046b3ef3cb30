"""Editing a pool file in place: a ruamel.yaml round trip (comments, order, quoting and indentation kept),
checked to load as a pool, then written atomically."""

from __future__ import annotations

import difflib
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from ladder.core.atomic import partial_file
from ladder.core.errors import ConfigError
from ladder.core.pool import load_pool
from ladder.core.yamlfile import config_text

Change = Callable[[CommentedMap, Path], None]
"""Edits the loaded document in place (the path is for error messages)."""


def _round_trip(text: str) -> YAML:
    """A round-trip YAML that writes ``text``'s own indentation back and never wraps long lines."""
    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=block_seq_indent or indent or 2, sequence=indent or 2, offset=block_seq_indent or 0)
    return yaml


def render_edit(path: Path, change: Change) -> tuple[str, str]:
    """(old text, new text) of the pool file ``path`` once ``change`` has edited its document; nothing is
    written. Text outside what ``change`` touches comes back as it was."""
    old = config_text(path)
    try:
        yaml = _round_trip(old)
        data = yaml.load(old)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: {exc.problem or exc}") from exc
    if not isinstance(data, CommentedMap):
        raise ConfigError(f"{path}: a pool file is a mapping")
    change(data, path)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return old, buffer.getvalue()


def write_pool_text(path: Path, text: str, *, check_only: bool = False) -> None:
    """Replace the pool file ``path`` with ``text`` atomically, once the text loads as a pool (errors name
    ``path``); with ``check_only``, only check it."""
    with partial_file(path, commit=not check_only) as partial:
        with partial.open("x", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            os.chmod(partial, stat.S_IMODE(path.stat().st_mode))  # the pool file keeps its permissions
        try:
            load_pool(partial)  # beside the original: relative checkpoint paths resolve the same way
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(partial), str(path))) from exc


def unified_diff(path: Path, old: str, new: str) -> str:
    """The change from ``old`` to ``new`` text of the pool file ``path``, as ``diff -u`` shows it."""
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path), str(path)))


def check_edit(path: Path, change: Change) -> tuple[str, str]:
    """`render_edit`, with the new text checked to load as a pool; nothing is written."""
    old, new = render_edit(path, change)
    if new != old:
        write_pool_text(path, new, check_only=True)
    return old, new


def edit_pool(path: Path, change: Change) -> tuple[str, str]:
    """Apply ``change`` to the pool file and write it back (atomically, only when it changed and the result
    loads as a pool). Returns (old text, new text)."""
    old, new = render_edit(path, change)
    if new != old:
        write_pool_text(path, new)
    return old, new


def set_key(mapping: CommentedMap, key: str, value: Any, after: str | None = None) -> None:
    """Set ``mapping[key]``, keeping its comments. A new key goes right after ``after`` (else last); the
    comment lines below that key stay above the key they introduce."""
    if isinstance(value, dict) and not isinstance(value, CommentedMap):
        value = CommentedMap(value)  # so that comment lines can follow its last key
    if key in mapping:
        mapping[key] = value
        return
    keys = list(mapping)
    if not keys:
        mapping[key] = value
        return
    anchor = after if after in keys else keys[-1]
    mapping.insert(keys.index(anchor) + 1, key, value)
    slot = mapping.ca.items.get(anchor)
    token = slot[2] if slot and len(slot) > 2 else None
    if not isinstance(token, CommentToken):
        return
    eol, newline, following = str(token.value).partition("\n")
    if not following:
        return
    # the anchor keeps its end-of-line comment; the comment lines below it follow the new key
    token.value = eol + newline
    holder, last = mapping, key
    while isinstance(holder[last], CommentedMap) and holder[last]:  # a block value: after its last line
        holder, last = holder[last], list(holder[last])[-1]
    holder.ca.items[last] = [None, None, CommentToken("\n" + following, token.start_mark, None), None]


def rewrite_cascade(path: Path, settings: dict[str, Any]) -> tuple[str, str]:
    """(old text, new text) of ``path`` with `routing.cascade` replaced by ``settings`` (keys it does not name
    would change what the plan costed, so none is kept), comments and layout elsewhere kept. The new text is
    checked to load as a pool; nothing is written."""

    cascade = CommentedMap()
    for key, value in settings.items():
        if isinstance(value, list | tuple):
            value = CommentedSeq(value)
            value.fa.set_flow_style()  # unsure_gap: [lower, upper], as the docs write it
        cascade[key] = value

    def change(document: CommentedMap, where: Path) -> None:
        routing = document.get("routing")
        if routing is None:
            set_key(document, "routing", CommentedMap(cascade=cascade), after="version")
            return
        if not isinstance(routing, CommentedMap):
            raise ConfigError(f"{where}: no routing mapping to write the cascade into")
        set_key(routing, "cascade", cascade)

    return check_edit(path, change)
