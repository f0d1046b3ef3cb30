"""The int8 encoder quantizes activations per token: a row embeds the same batched (with padding) as alone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from ladder.core.encoder import INFO_FILE, TOKENIZER_FILE, OnnxEncoder, _similar_widths
from ladder.export.encoder_build import LONG_TEXT, build_encoder
from ladder.export.onnx_export import per_token_activations, quantize_int8

TEXTS = [
    "ok",
    "",
    "東京から大阪まで新幹線で何時間かかりますか？",
    "请解释一下量子纠缠的基本原理，并举一个例子。",
    "Write a Python function that merges two sorted lists in linear time, and explain why it is linear.",
    "hi",
    LONG_TEXT,  # cut to 512 tokens: every other row is padded to its length
    "Which enzyme unwinds the DNA double helix during replication? " * 6,
]
LAYERS = 12  # multilingual-e5-small
MATMULS_PER_LAYER = 6  # Q, K, V, attention output, feed-forward in and out


@pytest.fixture(scope="module")
def e5_dir() -> Path:
    return build_encoder("multilingual-e5-small")  # a no-op once built at setup


@pytest.fixture(scope="module")
def per_token_dir(e5_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the e5 folder whose encoder.int8.onnx is built by today's int8 step from its fp32 graph."""
    out = tmp_path_factory.mktemp("e5-int8-per-token")
    for name in (INFO_FILE, TOKENIZER_FILE, "encoder.onnx"):
        (out / name).symlink_to(e5_dir / name)
    quantize_int8(e5_dir / "encoder.onnx", out / "encoder.int8.onnx")
    return out


def test_int8_graph_quantizes_every_matmul_per_token(per_token_dir: Path) -> None:
    graph = onnx.load(str(per_token_dir / "encoder.int8.onnx"), load_external_data=False).graph
    ops = Counter(node.op_type for node in graph.node)
    # per-tensor activation quantization, in any of the forms ORT writes or fuses, is gone
    assert not ops.keys() & {"DynamicQuantizeLinear", "QAttention", "DynamicQuantizeMatMul", "MatMulInteger"}
    assert ops["MatMulIntegerToFloat"] == LAYERS * MATMULS_PER_LAYER
    assert ops["MatMul"] == 0 and ops["MultiHeadAttention"] == LAYERS
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "MatMulIntegerToFloat":
            # the activation scale is a computed tensor (one per token), the weight scale one per channel
            assert (
                node.input[2] not in shapes
                and len(shapes[node.input[3]]) == 1
                and shapes[node.input[3]][0] > 1
            )


def test_batched_rows_equal_rows_alone(per_token_dir: Path) -> None:
    alone = OnnxEncoder(per_token_dir, "int8", threads=2, per_row=True)
    batched = OnnxEncoder(per_token_dir, "int8", threads=2, per_row=False)
    encoded = batched.tokenizer.encode(TEXTS)
    assert len(set(encoded.lengths)) >= 6 and max(encoded.lengths) == 512  # mixed lengths, much padding
    together = batched.embed_ids(encoded.input_ids, encoded.attention_mask)
    one_by_one = alone.embed_ids(encoded.input_ids, encoded.attention_mask)
    assert np.abs(together - one_by_one).max() <= 1e-5
    # and in other company: reversed, in pairs, through embed()'s length-sorted batches
    reversed_rows = batched.embed_ids(encoded.input_ids[::-1], encoded.attention_mask[::-1])[::-1]
    assert np.abs(reversed_rows - one_by_one).max() <= 1e-5
    assert np.abs(batched.embed(TEXTS, batch_size=2) - one_by_one).max() <= 1e-5


def test_per_token_int8_stays_close_to_fp32(e5_dir: Path, per_token_dir: Path) -> None:
    fp32 = OnnxEncoder(e5_dir, "fp32", threads=2).embed(TEXTS)
    per_token = OnnxEncoder(per_token_dir, "int8", threads=2, per_row=False).embed(TEXTS)
    cosine = np.sum(per_token * fp32, axis=1)  # both are unit vectors
    assert cosine.min() >= 0.995, cosine  # per-tensor activations reach 0.991 on MMLU-Pro prompts
    np.testing.assert_allclose(np.linalg.norm(per_token, axis=1), 1.0, atol=1e-5)


def test_rewrite_refuses_a_quantized_input_it_does_not_know(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "scale", "zero_point"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "odd", [x], [y])), str(path))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="DynamicQuantizeLinear -> MatMulInteger"):
        per_token_activations(path)
    assert path.read_bytes() == before


@given(st.lists(st.integers(min_value=1, max_value=512), max_size=64))
def test_a_batch_runs_as_groups_of_similar_width(widths: list[int]) -> None:
    """Every row in exactly one group, and no group pads a row past 1.25x its narrowest + 16 tokens."""
    groups = _similar_widths(widths)
    assert sorted(i for group in groups for i in group) == list(range(len(widths)))
    for group in groups:
        narrowest = min(widths[i] for i in group)
        assert max(widths[i] for i in group) <= 1.25 * narrowest + 16


def test_mixed_widths_embed_as_they_do_alone(e5_dir: Path) -> None:
    """Through the grouping, on the installed (per-token) int8 graph: each row as it embeds alone."""
    encoder = OnnxEncoder(e5_dir, "int8", threads=1)
    assert not encoder.per_row
    texts = ["hi", "ok", *TEXTS[2:5], "Which enzyme unwinds DNA? " * 40]
    batch = encoder.tokenizer.encode(texts)
    together = encoder.embed_ids(batch.input_ids, batch.attention_mask)
    alone = np.vstack([encoder.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
