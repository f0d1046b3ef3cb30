"""Triton python-backend tokeniser step: raw UTF-8 text (BYTES) → ``input_ids`` and ``attention_mask``.

Self-contained (``tokenizers`` and ``numpy`` only), because it runs inside Triton, not beside Ladder.
It reproduces ``ladder.core.encoder.Tokenizer`` exactly: ``[head] prefix content [tail]``, a text longer than
the budget keeps its END, rows right-padded with ``pad_id``. Settings: ``tokenizer_config.json`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
CHARS_PER_TOKEN_WINDOW = 12  # same window as ladder.core.encoder: tokenize only the last max_tokens * 12 chars


class TextTokenizer:
    """``tokenizer.json`` + prefix + keep-the-end budget, as numpy batches."""

    def __init__(self, directory: Path, prefix: str, max_tokens: int, pad_id: int) -> None:
        self._tok = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.prefix = prefix
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        plain = self._tok.encode("x", add_special_tokens=False).ids
        full = self._tok.encode("x", add_special_tokens=True).ids
        start = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
        self.head, self.tail = full[:start], full[start + len(plain) :]
        self.prefix_ids = self._ids([prefix.rstrip()])[0] if prefix else []
        self.budget = max_tokens - len(self.head) - len(self.prefix_ids) - len(self.tail)

    @classmethod
    def from_dir(cls, directory: Path) -> TextTokenizer:
        """Load from a folder holding ``tokenizer.json`` and ``tokenizer_config.json``."""
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        return cls(directory, str(config["prefix"]), int(config["max_tokens"]), int(config["pad_id"]))

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def _content(self, text: str, ids: list[int]) -> list[int]:
        window = self.max_tokens * CHARS_PER_TOKEN_WINDOW
        skip = len(self.prefix_ids)
        content = ids[skip:]
        width = window
        while len(text) > width and len(content) <= self.budget:
            width *= 4
            content = self._ids([self.prefix + text[-width:]])[0][skip:]
        return content[-self.budget :] if len(content) > self.budget else content

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """int64 ``input_ids`` and ``attention_mask`` [len(texts), longest row]."""
        window = self.max_tokens * CHARS_PER_TOKEN_WINDOW
        joined = self._ids([self.prefix + t[-window:] for t in texts])
        rows = [
            self.head + self.prefix_ids + self._content(t, ids) + self.tail
            for t, ids in zip(texts, joined, strict=True)
        ]
        width = max((len(r) for r in rows), default=0)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask


def decode_texts(raw: np.ndarray) -> list[str]:
    """A BYTES tensor [batch, 1] (or [batch]) as Python strings; raises ValueError on invalid UTF-8."""
    out = []
    for item in raw.reshape(-1):
        out.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
    return out


class TritonPythonModel:
    """The ``tokenizer`` model: input ``text`` → outputs ``input_ids``, ``attention_mask``."""

    def initialize(self, args: dict[str, Any]) -> None:
        directory = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = TextTokenizer.from_dir(directory)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                texts = decode_texts(pb_utils.get_input_tensor_by_name(request, "text").as_numpy())
                ids, mask = self.tokenizer.encode(texts)
            except (ValueError, UnicodeDecodeError) as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad text: {exc}")))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("input_ids", ids),
                        pb_utils.Tensor("attention_mask", mask),
                    ]
                )
            )
        return responses
