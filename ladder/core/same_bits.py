"""Rewrite an int8 encoder graph so that every CPU computes it to the same bits (x86 with or without VNNI, arm64).

The int8 encoder re-quantizes its activations before every matrix product, so a last-bit difference in a float
kernel can move a value across a rounding boundary and grow, layer by layer, into P(correct) differences of
0.01. Given the same inputs, three of ONNX Runtime's kernels in the graph compute differently per CPU:

- ``QEmbedLayerNormalization``: a scalar C++ loop that the aarch64 compiler contracts into fused multiply-adds
  (x86 builds round every product). Rewritten as standard ops in the loop's own order (sums by ``CumSum``), it
  computes the x86 kernel's bits exactly, on every CPU.
- ``MultiHeadAttention``'s softmax: MLAS sums the exponentials in 8 lanes (AVX2), 16 (AVX-512) or 4 (NEON), in
  a different order each. Rewritten as ``MatMul`` (whose sums are bit-identical across these CPUs) and a
  polynomial ``exp`` of correctly rounded ``Mul``/``Add``; the weights are summed by the same ``MatMul`` that
  applies them (a column of ones beside the values), and padded keys weigh exactly zero.
- ``SkipLayerNormalization``: a third of its outputs differ in the last bit between x86 and arm64 (sums and
  roundings vectorised differently). Rewritten as standard ops, the two sums in index order (``CumSum``).

Every other kernel of the int8 graph (integer matrix products, ``BiasGelu``, ``QuantizeLinear``, the float
``MatMul``) already agrees bit for bit; ``docs/images.md`` ("arm64 parity") has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

_MS = "com.microsoft"
MARK = "ladder.same_bits"  # metadata key set on a rewritten graph
EXP_FLOOR = -40.0  # exp(z) below e**-40 counts as e**-40: 512 such keys weigh 2e-15 against the largest's 1
# exp(f * ln 2) = 2**f on [-0.5, 0.5]: Taylor coefficients of 2**f to degree 7 (error below 2e-9 relative)
_POW2 = tuple(np.float32(np.log(2.0) ** k / np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(8))


def same_bits(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place (see the module's docstring); returns how many nodes were replaced."""
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    rewrites: dict[str, Callable[[onnx.NodeProto, _Builder], None]] = {
        "QEmbedLayerNormalization": _embed_layer_norm,
        "SkipLayerNormalization": _skip_layer_norm,
        "MultiHeadAttention": _attention,
    }
    nodes: list[onnx.NodeProto] = []
    replaced = 0
    for node in graph.node:
        rewrite = rewrites.get(node.op_type) if node.domain == _MS else None
        if rewrite is None:
            nodes.append(node)
            continue
        builder = _Builder(f"{node.name or node.output[0]}/same_bits", init, opset)
        rewrite(node, builder)
        nodes += builder.nodes
        graph.initializer.extend(builder.constants)
        replaced += 1
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for n in nodes for name in n.input}
        kept = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        if not any(p.key == MARK for p in model.metadata_props):
            model.metadata_props.append(onnx.StringStringEntryProto(key=MARK, value="1"))
    return replaced


class _Builder:
    """Appends nodes and constants under one name prefix."""

    def __init__(self, prefix: str, init: dict[str, onnx.TensorProto], opset: int) -> None:
        self.prefix, self.init, self.opset = prefix, init, opset
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self._count = 0

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        name = out or f"{self.prefix}/{op_type}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def const(self, value: object, dtype: type = np.float32) -> str:
        self._count += 1
        name = f"{self.prefix}/c{self._count}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.init[name])

    def last_max(self, x: str) -> str:
        """The maximum over the last axis, kept (opset 18 takes the axes as an input)."""
        if self.opset >= 18:
            return self.op("ReduceMax", x, self.const([-1], np.int64), keepdims=1)
        return self.op("ReduceMax", x, axes=[-1], keepdims=1)

    def last_sum(self, x: str) -> str:
        """The sum over the last axis in index order, one rounding per addition, kept as a [..., 1] axis."""
        running = self.op("CumSum", x, self.const(-1, np.int64))
        start, end = self.const([-1], np.int64), self.const([np.iinfo(np.int64).max], np.int64)
        return self.op("Slice", running, start, end, self.const([-1], np.int64))


def _dequantized(b: _Builder, q: str, scale: str, zero_point: str) -> str:
    """``(q - zero_point) * scale`` as the quantized kernels compute it: an exact difference, one rounding."""
    zp = float(b.array(zero_point))
    return b.op("Mul", b.op("Sub", b.op("Cast", q, to=onnx.TensorProto.FLOAT), b.const(zp)), scale)


def _embed_layer_norm(node: onnx.NodeProto, b: _Builder) -> None:
    """QEmbedLayerNormalization's loop: word + position (+ segment) embeddings, then a layer norm."""
    ids, segments, word, position, segment, gamma, beta, mask = (list(node.input) + [""] * 8)[:8]
    scales, zero_points = node.input[8:13], node.input[13:18]
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
    hidden = int(b.array(word).shape[1])
    x = _dequantized(b, b.op("Gather", word, ids, axis=0), scales[0], zero_points[0])
    length = b.op("Gather", b.op("Shape", ids), b.const(1, np.int64), axis=0)
    positions = b.op("Slice", position, b.const([0], np.int64), b.op("Unsqueeze", length, b.const([0], np.int64)))
    x = b.op("Add", x, _dequantized(b, positions, scales[1], zero_points[1]))
    if segments and segment:
        x = b.op("Add", x, _dequantized(b, b.op("Gather", segment, segments, axis=0), scales[2], zero_points[2]))
    g = (b.array(gamma).astype(np.int32) - int(b.array(zero_points[3]))).astype(np.float32) * b.array(scales[3])
    s = (b.array(beta).astype(np.int32) - int(b.array(zero_points[4]))).astype(np.float32) * b.array(scales[4])
    _layer_norm(b, x, b.const(g), b.const(s), eps, hidden, node.output[0])
    if any(node.output[1:]):  # mask_index: attended tokens per row (the kernel counts the 1s)
        if not mask:
            raise ValueError(f"{node.name}: a mask index without a mask is not rewritten")
        ones = b.op("Cast", b.op("Equal", mask, b.const(1, np.int32)), to=onnx.TensorProto.INT32)
        b.op("ReduceSum", ones, b.const([1], np.int64), keepdims=0, out=node.output[1])


def _layer_norm(b: _Builder, x: str, gamma: str, beta: str, eps: float, hidden: int, out: str) -> None:
    """(x - mean) / sqrt(variance + eps) * gamma + beta over the last axis, both sums in index order."""
    width = b.const(float(hidden))
    centred = b.op("Sub", x, b.op("Div", b.last_sum(x), width))
    variance = b.op("Div", b.last_sum(b.op("Mul", centred, centred)), width)
    deviation = b.op("Sqrt", b.op("Add", variance, b.const(eps)))
    b.op("Add", b.op("Mul", b.op("Div", centred, deviation), gamma), beta, out=out)


def _skip_layer_norm(node: onnx.NodeProto, b: _Builder) -> None:
    """SkipLayerNormalization: (input + skip) + bias, then a layer norm."""
    x, skip, gamma, beta, bias = (list(node.input) + [""] * 5)[:5]
    if not beta or any(node.output[1:]):
        raise ValueError(f"{node.name}: only a layer norm with beta and one output is rewritten")
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
    total = b.op("Add", x, skip)
    if bias:
        total = b.op("Add", total, bias)
    _layer_norm(b, total, gamma, beta, eps, int(b.array(gamma).shape[-1]), node.output[0])


def _exp(b: _Builder, z: str) -> str:
    """exp(z) for z <= 0: 2**f * 2**n with n = round(z / ln 2), 2**f (f in [-0.5, 0.5]) by polynomial and 2**-n
    an integer shift; Mul, Add, Sub, Round, BitShift and Cast only, each exact or correctly rounded on every
    CPU."""
    t = b.op("Mul", b.op("Max", z, b.const(EXP_FLOOR)), b.const(1 / np.log(2.0)))
    n = b.op("Round", t)
    f = b.op("Sub", t, n)
    p = b.const(_POW2[-1])
    for coefficient in reversed(_POW2[:-1]):
        p = b.op("Add", b.op("Mul", p, f), b.const(coefficient))
    shift = b.op("Cast", b.op("Neg", n), to=onnx.TensorProto.UINT64)  # 0 <= -n <= 58
    power = b.op("Cast", b.op("BitShift", b.const(1, np.uint64), shift, direction="LEFT"), to=onnx.TensorProto.FLOAT)
    return b.op("Div", p, power)


def _attention(node: onnx.NodeProto, b: _Builder) -> None:
    """MultiHeadAttention with separate Q, K, V [batch, seq, hidden], a packed bias and per-row key lengths."""
    q, k, v, bias, lengths = (list(node.input) + [""] * 5)[:5]
    unidirectional = any(a.name == "unidirectional" and a.i for a in node.attribute)
    if any(node.input[5:]) or any(node.output[1:]) or unidirectional:
        raise ValueError(f"{node.name}: only bidirectional attention without extra inputs or outputs is rewritten")
    heads = next(a.i for a in node.attribute if a.name == "num_heads")
    scale = next((a.f for a in node.attribute if a.name == "scale"), 0.0)
    hidden = int(b.array(bias).shape[0]) // 3
    head = hidden // heads
    bias_parts = np.split(b.array(bias).astype(np.float32), 3)
    split = b.const([0, 0, heads, head], np.int64)

    def per_head(x: str, part: int, perm: list[int]) -> str:
        return b.op("Transpose", b.op("Reshape", b.op("Add", x, b.const(bias_parts[part])), split), perm=perm)

    queries, keys_t, values = per_head(q, 0, [0, 2, 1, 3]), per_head(k, 1, [0, 2, 3, 1]), per_head(v, 2, [0, 2, 1, 3])
    alpha = np.float32(scale) if scale else np.float32(1) / np.sqrt(np.float32(head))
    scores = b.op("Mul", b.op("MatMul", queries, keys_t), b.const(alpha))  # [batch, heads, seq, keys]
    if lengths:  # keys at or past a row's length weigh zero
        keys = b.op("Range", b.const(0, np.int64), b.op("Gather", b.op("Shape", k), b.const(1, np.int64), axis=0),
                    b.const(1, np.int64))  # fmt: skip
        per_row = b.op("Reshape", b.op("Cast", lengths, to=onnx.TensorProto.INT64), b.const([-1, 1, 1, 1], np.int64))
        keep = b.op("Cast", b.op("Less", keys, per_row), to=onnx.TensorProto.FLOAT)
        scores = b.op("Add", scores, b.op("Mul", b.op("Sub", keep, b.const(1.0)), b.const(10000.0)))
    weights = _exp(b, b.op("Sub", scores, b.last_max(scores)))
    if lengths:
        weights = b.op("Mul", weights, keep)
    # weights @ [values | 1]: the weighted values and, in the last column, the sum of the weights (each
    # column summed over the keys in the same order), normalised after the product
    rows = b.op("Slice", b.op("Shape", values), b.const([0], np.int64), b.const([3], np.int64))
    ones = b.op("Expand", b.const([[[[1.0]]]]), b.op("Concat", rows, b.const([1], np.int64), axis=0))
    both = b.op("MatMul", weights, b.op("Concat", values, ones, axis=-1))
    last = b.const([-1], np.int64)
    context = b.op("Slice", both, b.const([0], np.int64), b.const([head], np.int64), last)
    total = b.op("Slice", both, b.const([head], np.int64), b.const([head + 1], np.int64), last)
    normalised = b.op("Div", context, b.op("Max", total, b.const(np.finfo(np.float32).tiny)))
    merged = b.op("Transpose", normalised, perm=[0, 2, 1, 3])
    b.op("Reshape", merged, b.const([0, 0, hidden], np.int64), out=node.output[0])
