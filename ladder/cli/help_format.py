"""Help without `<bool>` placeholders: a flag (``--dry-run``, ``--help``) takes no value, so none is shown."""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_typer_display_type_rich = TyperOption.display_type_rich


def _display_type_rich(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag or self.count:
        return None
    return _typer_display_type_rich(self, ctx)


def drop_flag_placeholders() -> None:
    """Typer 0.2x shows a value type such as `<bool>` beside flags; ``--dry-run true`` then fails."""
    TyperOption.display_type_rich = _display_type_rich  # type: ignore[method-assign]
