"""Importers from public routing-data formats to RoutingData, and a registry of them by short name."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ladder.core.errors import DataError
from ladder.training.dataset import RoutingData, read_canonical
from ladder.training.importers._cascades_llama import from_cascades_llama
from ladder.training.importers._common import text_id
from ladder.training.importers._llmrouter import from_llmrouter, import_llmrouter_dir
from ladder.training.importers._mmlu_pro import from_mmlu_pro, question_text
from ladder.training.importers._routellm import from_routellm
from ladder.training.importers._tabular import from_nvidia_v3, from_routerbench_wide

__all__ = [
    "IMPORTERS",
    "from_cascades_llama",
    "from_llmrouter",
    "from_mmlu_pro",
    "from_nvidia_v3",
    "from_routellm",
    "from_routerbench_wide",
    "import_data",
    "import_llmrouter_dir",
    "question_text",
    "read_canonical_path",
    "text_id",
]


def _llmrouter(path: Path) -> RoutingData:
    """A LLMRouter `data/` folder (train + test), or a single `dcrouter_*.json` file (no tasks, no costs)."""
    return import_llmrouter_dir(path) if path.is_dir() else from_llmrouter(path)


def read_canonical_path(path: Path) -> RoutingData:
    """A canonical file, or every `*.csv` / `*.csv.gz` in a folder (merged, in name order)."""
    if path.is_dir():
        files = sorted([*path.glob("*.csv"), *path.glob("*.csv.gz")])
        if not files:
            raise DataError(f"{path}: no *.csv or *.csv.gz files in this folder")
        return read_canonical(files)
    return read_canonical([path])


IMPORTERS: dict[str, Callable[[Path], RoutingData]] = {
    "canonical": read_canonical_path,
    "nvidia-v3": from_nvidia_v3,
    "routerbench": from_routerbench_wide,
    "llmrouter": _llmrouter,
    "mmlu-pro": from_mmlu_pro,
    "routellm-mmlu": partial(from_routellm, benchmark="mmlu"),
    "routellm-gsm8k": partial(from_routellm, benchmark="gsm8k"),
    "routellm-mt-bench": partial(from_routellm, benchmark="mt_bench"),
    "cascades-llama": from_cascades_llama,
}
"""Short format name -> importer taking the source file or folder."""


def import_data(fmt: str, path: Path | str) -> RoutingData:
    """Import `path` (a file or folder, as the format expects) with the importer named `fmt`."""
    importer = IMPORTERS.get(fmt)
    if importer is None:
        close = difflib.get_close_matches(fmt, list(IMPORTERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown data format {fmt!r}{hint}; known formats: {', '.join(IMPORTERS)}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (for format {fmt!r})")
    return importer(path)
