"""The int8 encoder's CPU-dependent float kernels, rewritten as standard ops: same model, same bits everywhere."""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ladder.core.encoder import EXACT_INT8, EncoderInfo, OnnxEncoder, Tokenizer, session_graph
from ladder.core.same_bits import MARK, same_bits
from ladder.export.encoder_build import LONG_TEXT, build_encoder

TEXTS = [
    "東京から大阪まで新幹線で何時間かかりますか？",
    "How much protein should an adult eat per day?",
    "请解释一下量子纠缠的基本原理。",
    "ok",
    LONG_TEXT,  # 512 tokens: the other rows are padded to its length when batched
]
REWRITTEN = {"QEmbedLayerNormalization": 1, "SkipLayerNormalization": 24, "MultiHeadAttention": 12}


@pytest.fixture(scope="module")
def e5_dir() -> Path:
    return build_encoder("multilingual-e5-small")  # a no-op once built at setup


@pytest.fixture(scope="module")
def graphs(e5_dir: Path) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    original = onnx.load(str(e5_dir / "encoder.int8.onnx"))
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)
    assert same_bits(rewritten) == sum(REWRITTEN.values())
    return original, rewritten


def _session(model: onnx.ModelProto, outputs: list[str] | None = None) -> ort.InferenceSession:
    if outputs:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(*EXACT_INT8)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_only_standard_ops_remain_where_kernels_differ(graphs: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    original, rewritten = graphs
    before = Counter(n.op_type for n in original.graph.node)
    after = Counter(n.op_type for n in rewritten.graph.node)
    assert {op: before[op] for op in REWRITTEN} == REWRITTEN
    assert not after.keys() & REWRITTEN.keys()
    assert not after.keys() & {"Softmax", "Exp", "LayerNormalization", "ReduceMean"}
    assert after["MatMulIntegerToFloat"] == before["MatMulIntegerToFloat"]  # the int8 products are untouched
    assert {p.key: p.value for p in rewritten.metadata_props}[MARK] == "1"
    used = {name for n in rewritten.graph.node for name in n.input}
    assert all(init.name in used for init in rewritten.graph.initializer)
    again = onnx.ModelProto.FromString(rewritten.SerializeToString())
    assert same_bits(again) == 0  # idempotent: a rewritten graph (or a future export) is left as it is


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the kernel's bits are x86's")
def test_embedding_layer_norm_keeps_the_x86_kernels_bits(
    e5_dir: Path, graphs: tuple[onnx.ModelProto, onnx.ModelProto]
) -> None:
    original, rewritten = graphs
    (node,) = (n for n in original.graph.node if n.op_type == "QEmbedLayerNormalization")
    feeds = _feeds(e5_dir, TEXTS[:3])
    kernel = _session(original, [node.output[0]]).run([node.output[0]], feeds)[0]
    standard = _session(rewritten, [node.output[0]]).run([node.output[0]], feeds)[0]
    assert np.array_equal(kernel, standard)


def test_same_model_within_int8_noise(e5_dir: Path, graphs: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    original, rewritten = graphs
    for text in TEXTS:
        feeds = _feeds(e5_dir, [text])
        old = _session(original).run(["embedding"], feeds)[0]
        new = _session(rewritten).run(["embedding"], feeds)[0]
        assert float((old * new).sum()) > 0.998, text  # both unit vectors; int8 vs fp32 is about 0.99


def test_rows_embed_the_same_batched_and_alone(e5_dir: Path) -> None:
    encoder = OnnxEncoder(e5_dir, "int8", per_row=False, info=_same_bits_info(e5_dir))
    encoded = encoder.tokenizer.encode(TEXTS)  # every row padded to the long text's 512 tokens
    together = encoder.session.run(["embedding"], {"input_ids": encoded.input_ids,
                                                   "attention_mask": encoded.attention_mask})[0]  # fmt: skip
    alone = np.concatenate([encoder.embed([text]) for text in TEXTS])
    assert np.abs(together - alone).max() <= 1e-6  # padded keys weigh exactly zero: pooling rounding only


def _same_bits_info(e5_dir: Path) -> EncoderInfo:
    return EncoderInfo.load(e5_dir).model_copy(update={"int8_kernels": "same_bits"})


def test_the_encoder_folder_chooses_the_kernels(e5_dir: Path) -> None:
    """``int8_kernels`` in encoder.json decides: fast (the default) leaves ONNX Runtime's fused kernels."""
    assert EncoderInfo.load(e5_dir).int8_kernels == "fast"
    assert session_graph(e5_dir / "encoder.int8.onnx", "int8") == str(e5_dir / "encoder.int8.onnx")
    fast = OnnxEncoder(e5_dir, "int8").embed(TEXTS[:1])
    same = OnnxEncoder(e5_dir, "int8", info=_same_bits_info(e5_dir)).embed(TEXTS[:1])
    assert 0 < np.abs(fast - same).max() < 0.05  # other rounding, the same embedding within int8 noise


def test_encoder_sessions_load_the_rewritten_graph(e5_dir: Path) -> None:
    graph = session_graph(e5_dir / "encoder.int8.onnx", "int8", same_bits_int8=True)
    assert isinstance(graph, bytes)
    assert not {n.op_type for n in onnx.ModelProto.FromString(graph).graph.node} & REWRITTEN.keys()
    assert session_graph(e5_dir / "encoder.onnx", "fp32") == str(e5_dir / "encoder.onnx")  # fp32: as built


def _feeds(e5_dir: Path, texts: list[str]) -> dict[str, np.ndarray]:
    encoded = Tokenizer(e5_dir).encode(texts)
    return {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask}
