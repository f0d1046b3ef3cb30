"""The text encoder at routing time: tokenizer.json + an ONNX graph run by ONNX Runtime (no torch).

An encoder folder (built at setup by ``python -m ladder.export.encoder_build NAME``) holds ``encoder.json``,
``tokenizer.json``, ``encoder.onnx`` and ``encoder.int8.onnx``; see ``docs/contracts.md``. A text longer than
the token budget keeps its *end*, because the question usually comes last in a prompt; the prefix (e5's
``"query: "``) and the special tokens are always kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tokenizers import Tokenizer as HfTokenizer

from ladder.core.errors import CheckpointError, ConfigError, LadderError
from ladder.core.prompt import check_string

if TYPE_CHECKING:
    import onnx

Variant = Literal["fp32", "int8"]
INFO_FILE = "encoder.json"
TOKENIZER_FILE = "tokenizer.json"
CHARS_PER_TOKEN_WINDOW = 12  # a long text is tokenized from its last max_tokens * 12 characters only


class EncoderVariant(StrEnum):
    """Which encoder graph embeds: fp32 or int8 (faster; its per-token activation quantisation puts the scores
    within about 0.015 of fp32). fp32 scores agree across CPUs to 1e-6; int8 ones bit for bit only with the
    encoder folder's ``int8_kernels: same_bits`` (slower), else within about 0.02."""

    FP32 = "fp32"
    INT8 = "int8"


class EncoderNotBuilt(LadderError):
    """The encoder folder is missing or incomplete: it is built at setup, not at routing time."""

    def __init__(self, directory: Path, detail: str = "") -> None:
        name = directory.name
        super().__init__(
            f"encoder {name!r} is not built in {directory}{': ' + detail if detail else ''}; "
            f"run `ladder setup` or `python -m ladder.export.encoder_build {name}`"
        )


class EncoderFiles(BaseModel):
    """The ONNX files of an encoder, relative to its folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fp32: str = "encoder.onnx"
    int8: str = "encoder.int8.onnx"


class EncoderInfo(BaseModel):
    """The contents of ``encoder.json``: what the ONNX graph expects and produces."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    source: str
    dim: int = Field(gt=0)
    pooling: Literal["mean", "last"] = "mean"
    normalize: bool = True
    prefix: str = ""
    max_tokens: int = Field(default=512, ge=8)
    vocab_size: int = Field(gt=0)
    pad_id: int = Field(default=0, ge=0)
    # How encoder.int8.onnx quantises activations. per_token: each token its own scale, so a row embeds the
    # same whatever it is batched with. per_tensor (folders built before): one scale over the whole batch.
    int8_activations: Literal["per_tensor", "per_token"] = "per_tensor"
    # Which kernels run encoder.int8.onnx's float steps. fast: ONNX Runtime's fused kernels, whose rounding differs
    # between CPUs (P(correct) by up to about 0.02 between x86 and arm64, or AVX2 and AVX-512). same_bits: those
    # steps rewritten at load (``ladder.core.same_bits``) to compute the same bits on every CPU, about 1.4x slower
    # at 41 tokens and 3x at 512. A checkpoint serves as evaluated only on the kernels it was evaluated with.
    int8_kernels: Literal["fast", "same_bits"] = "fast"
    files: EncoderFiles = EncoderFiles()

    def batching_moves_rows(self, variant: str) -> bool:
        """Whether a row's embedding depends on what it is batched with: only an int8 graph that shares one
        activation scale over the whole tensor (per_tensor); such rows must run alone."""
        return variant == "int8" and self.int8_activations == "per_tensor"

    @classmethod
    def load(cls, directory: Path | str) -> EncoderInfo:
        """Read ``<directory>/encoder.json``; raise ``EncoderNotBuilt`` when it is absent."""
        path = Path(directory) / INFO_FILE
        if not path.is_file():
            raise EncoderNotBuilt(Path(directory), f"{INFO_FILE} is missing")
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"{path}: invalid encoder description: {exc}") from exc

    def save(self, directory: Path) -> None:
        """Write ``encoder.json`` (the last file of a build)."""
        (directory / INFO_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Encoded:
    """A tokenized batch, right-padded to its longest row."""

    input_ids: NDArray[np.int64]
    attention_mask: NDArray[np.int64]
    lengths: list[int]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, rows: Sequence[int]) -> Encoded:
        """The given rows, trimmed to the longest of them."""
        index = np.asarray(rows, dtype=np.int64)
        width = max((self.lengths[i] for i in rows), default=0)
        return Encoded(
            self.input_ids[index, :width],
            self.attention_mask[index, :width],
            [self.lengths[i] for i in rows],
            [self.truncated[i] for i in rows],
        )


class Tokenizer:
    """``tokenizer.json`` with the encoder's prefix and a keep-the-end token budget."""

    def __init__(
        self, directory: Path | str, max_tokens: int | None = None, *, info: EncoderInfo | None = None
    ) -> None:
        directory = Path(directory)
        self.info = info or EncoderInfo.load(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise EncoderNotBuilt(directory, f"{TOKENIZER_FILE} is missing")
        self._tok = HfTokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.max_tokens = min(max_tokens or self.info.max_tokens, self.info.max_tokens)
        self.head, self.tail = self._specials()
        prefix = self.info.prefix
        self.prefix_ids = self._ids([prefix.rstrip()])[0] if prefix else []
        if prefix and self._ids([prefix + "x"])[0][: len(self.prefix_ids)] != self.prefix_ids:
            raise ConfigError(f"{directory}: the prefix {prefix!r} does not tokenize apart from the text")
        fixed = len(self.head) + len(self.prefix_ids) + len(self.tail)
        self.budget = self.max_tokens - fixed
        if self.budget < 1:
            raise ValueError(f"max_tokens={self.max_tokens} leaves no room after {fixed} fixed tokens")

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def _specials(self) -> tuple[list[int], list[int]]:
        """The special tokens the post-processor puts before and after a single text."""
        plain = self._tok.encode("x", add_special_tokens=False).ids
        full = self._tok.encode("x", add_special_tokens=True).ids
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        raise ConfigError("cannot locate the text between the tokenizer's special tokens")

    def _content(self, texts: list[str]) -> list[tuple[list[int], bool]]:
        """Each text's content ids (prefix excluded), cut to the budget from the end, and whether cut."""
        window = self.max_tokens * CHARS_PER_TOKEN_WINDOW
        joined = [self.info.prefix + t[-window:] for t in texts]
        skip = len(self.prefix_ids)
        out = []
        for text, ids in zip(texts, self._ids(joined), strict=True):
            content = ids[skip:]
            width = window
            # A cut text must still yield more than the budget (its first, partial word is then dropped).
            while len(text) > width and len(content) <= self.budget:
                width *= 4
                content = self._ids([self.info.prefix + text[-width:]])[0][skip:]
            cut = len(content) > self.budget
            out.append((content[-self.budget :] if cut else content, cut))
        return out

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenize a batch: ``[head] prefix content [tail]``, right-padded with ``pad_id``."""
        texts = _check_texts(texts)
        rows = []
        truncated = []
        for content, cut in self._content(texts):
            rows.append(self.head + self.prefix_ids + content + self.tail)
            truncated.append(cut)
        lengths = [len(r) for r in rows]
        width = max(lengths, default=0)
        ids = np.full((len(rows), width), self.info.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return Encoded(ids, mask, lengths, truncated)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    return [check_string(text, f"text {i}") for i, text in enumerate(texts)]


def _widths(mask: NDArray[np.int64]) -> list[int]:
    """Each row's width without its right padding: up to its last attended position (at least 1)."""
    attended = mask != 0
    last = mask.shape[1] - np.argmax(attended[:, ::-1], axis=1)
    return [int(w) if row.any() else 1 for w, row in zip(last, attended, strict=True)]


def _similar_widths(widths: list[int], slack: float = 1.25, extra: int = 16) -> list[list[int]]:
    """Rows grouped by width, each group within ``slack`` x its narrowest (+ ``extra`` tokens): a batch of
    mixed lengths runs as a few batches that pad little, instead of every row padded to the longest."""
    groups: list[list[int]] = []
    narrowest = 0
    for i in sorted(range(len(widths)), key=widths.__getitem__):
        if not groups or widths[i] > slack * narrowest + extra:
            groups.append([])
            narrowest = widths[i]
        groups[-1].append(i)
    return groups


# ORT's u8s8 int8 MatMul on x86 CPUs without VNNI (AVX2, AVX-512F) adds products pairwise into int16 with
# saturation (vpmaddubsw); ARM, and x86 with VNNI, sum exactly. This option makes those x86 CPUs use the exact
# u8u8 kernel. With the float kernels that differ per CPU rewritten (`ladder.core.same_bits`), the int8 encoder
# computes the same bits on every CPU, and an arm64 host (DGX Spark) routes as an x86 one (docs/images.md).
EXACT_INT8 = ("session.x64quantprecision", "1")


def session_graph(
    encoder: Path, variant: Variant, head: Path | None = None, *, same_bits_int8: bool = False
) -> str | bytes:
    """What ``ort.InferenceSession`` loads for an encoder file: with ``same_bits_int8``, an int8 graph rewritten
    to compute the same bits on every CPU (``same_bits``); the head's graph appended when ``head`` is given;
    else the file's path."""
    rewrite = variant == "int8" and same_bits_int8
    if not rewrite and head is None:
        return str(encoder)
    import onnx

    from ladder.core.same_bits import same_bits

    model = onnx.load(str(encoder))
    if rewrite:
        same_bits(model)
    if head is not None:
        model = fused_graph(model, head, encoder.name)
    serialised: bytes = model.SerializeToString()
    return serialised


def fused_graph(encoder: onnx.ModelProto, head: Path, label: str = "the encoder") -> onnx.ModelProto:
    """The encoder's graph with the head's appended (``embedding`` feeds the head): outputs ``embedding`` and
    ``p_correct``."""
    import onnx
    import onnx.compose

    try:
        fused = onnx.compose.merge_models(
            encoder,
            onnx.load(str(head)),
            io_map=[("embedding", "embedding")],
            prefix2="head/",
            outputs=["embedding", "head/p_correct"],
        )
    except Exception as exc:  # protobuf's DecodeError, onnx's ValueError and checker errors alike
        raise CheckpointError(f"{head}: cannot fuse this head onto {label} ({exc})") from exc
    (p_correct,) = (o for o in fused.graph.output if o.name == "head/p_correct")
    for node in fused.graph.node:
        node.input[:] = ["p_correct" if name == p_correct.name else name for name in node.input]
        node.output[:] = ["p_correct" if name == p_correct.name else name for name in node.output]
    p_correct.name = "p_correct"
    return fused


class OnnxEncoder:
    """Embeds texts with an encoder folder's ONNX graph on ONNX Runtime.

    ``per_row`` runs every row of a batch alone at its own length, so that its embedding is the same whatever
    it is batched with. It is on by default only where batching would change a row: an int8 graph that
    quantises activations with one scale per tensor (folders built before per-token graphs).

    ``head`` (a checkpoint's ``head.onnx``) fuses the P(correct) head onto the encoder's graph: one ONNX Runtime
    call per batch yields both tensors (`score_ids`), with the same kernels and so the same numbers as running
    the two graphs one after the other, without the second call's overhead on every request.
    """

    def __init__(
        self,
        directory: Path | str,
        variant: Variant = "int8",
        threads: int | None = None,
        *,
        info: EncoderInfo | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        per_row: bool | None = None,
        head: Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.info = info or EncoderInfo.load(self.directory)
        if variant not in ("fp32", "int8"):
            raise ValueError(f"variant must be 'fp32' or 'int8', not {variant!r}")
        path = self.directory / getattr(self.info.files, variant)
        if not path.is_file():
            raise EncoderNotBuilt(self.directory, f"{path.name} is missing")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.add_session_config_entry(*EXACT_INT8)
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, not {threads}")
            options.intra_op_num_threads = threads
        self.variant = variant
        self.per_row = self.info.batching_moves_rows(variant) if per_row is None else per_row
        graph = session_graph(path, variant, head, same_bits_int8=self.info.int8_kernels == "same_bits")
        self.session = ort.InferenceSession(graph, options, providers=list(providers))
        self.has_head = head is not None
        outputs = self.session.get_outputs()  # read once: widths of `embedding` and the fused `p_correct`
        self._output_widths = {o.name: self.info.dim if o.name == "embedding" else int(o.shape[1]) for o in outputs}
        self.tokenizer = Tokenizer(self.directory, info=self.info)

    @property
    def dim(self) -> int:
        return self.info.dim

    def embed_ids(self, input_ids: NDArray[np.integer], attention_mask: NDArray[np.integer]) -> NDArray[np.float32]:
        """Embeddings float32 [n, dim] of a tokenized batch (int [n, seq] ids and mask)."""
        return self._run_ids(input_ids, attention_mask, "embedding")

    def score_ids(self, input_ids: NDArray[np.integer], attention_mask: NDArray[np.integer]) -> NDArray[np.float32]:
        """P(correct) float32 [n, models] from the fused head (an encoder built with ``head``)."""
        if not self.has_head:
            raise ValueError("this encoder has no fused head; build it with head=<checkpoint>/head.onnx")
        return self._run_ids(input_ids, attention_mask, "p_correct")

    def _run_ids(
        self, input_ids: NDArray[np.integer], attention_mask: NDArray[np.integer], output: str
    ) -> NDArray[np.float32]:
        ids = np.asarray(input_ids)
        mask = np.asarray(attention_mask)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal 2-D shapes")
        if not (np.issubdtype(ids.dtype, np.integer) and np.issubdtype(mask.dtype, np.integer)):
            raise ValueError("input_ids and attention_mask must be integer arrays")
        if ids.shape[1] > self.info.max_tokens:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the encoder's {self.info.max_tokens}")
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            return np.zeros((ids.shape[0], self._output_widths[output]), dtype=np.float32)
        if ids.min() < 0 or ids.max() >= self.info.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.info.vocab_size})")
        ids = ids.astype(np.int64, copy=False)
        mask = mask.astype(np.int64, copy=False)
        out = np.empty((ids.shape[0], self._output_widths[output]), dtype=np.float32)
        widths = _widths(mask)
        groups = [[i] for i in range(len(widths))] if self.per_row else _similar_widths(widths)
        for rows in groups:
            width = max(widths[i] for i in rows)
            feeds = {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]}
            (out[rows],) = self.session.run([output], feeds)
        return out

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """Embeddings float32 [n, dim] of texts, batched by similar length, in the input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        encoded = self.tokenizer.encode(texts)
        out = np.zeros((len(encoded), self.dim), dtype=np.float32)
        order = np.argsort(np.asarray(encoded.lengths), kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size].tolist()
            batch = encoded.take(rows)
            out[rows] = self.embed_ids(batch.input_ids, batch.attention_mask)
        return out
