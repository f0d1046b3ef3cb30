"""Generic ONNX steps shared by every export: torch module → named ONNX graph → fused graph → int8 graph."""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from torch.jit._trace import TracerWarning

OPSET = 17
_MS = "com.microsoft"

# Known, harmless noise of the TorchScript exporter on transformers models (checked by the parity tests).
_EXPORT_NOISE = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
    "Exporting aten::index operator",
    "Converting a tensor to a Python",
)


def export_onnx(
    module: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: Path,
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> Path:
    """Trace ``module`` with named inputs (in call order) and write an opset-17 ONNX graph."""
    module.eval()
    with warnings.catch_warnings():
        for message in _EXPORT_NOISE:
            warnings.filterwarnings("ignore", message=re.escape(message))
        warnings.filterwarnings("ignore", category=TracerWarning)
        with torch.no_grad():
            torch.onnx.export(
                module,
                tuple(inputs.values()),
                str(path),
                input_names=list(inputs),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    _check_names(path, list(inputs), output_names)
    return path


def _check_names(path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    graph = onnx.load(str(path), load_external_data=False).graph
    got_in = [i.name for i in graph.input]
    got_out = [o.name for o in graph.output]
    if got_in != list(inputs) or got_out != list(outputs):
        raise RuntimeError(f"{path}: tensors are {got_in} -> {got_out}, expected {list(inputs)} -> {outputs}")


def optimize_transformer(
    src: Path, dst: Path, *, num_heads: int, hidden_size: int, model_type: str = "bert"
) -> dict[str, int]:
    """Fuse attention, layer norms and GELU with ORT's transformer optimizer; returns the fused counts."""
    model = optimize_model(
        str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    model.save_model_to_file(str(dst))
    stats = model.get_fused_operator_statistics()
    return {op: int(n) for op, n in stats.items() if n}


def quantize_int8(
    src: Path, dst: Path, *, op_types: Sequence[str] | None = None, keep_ffn_output: bool = False
) -> Path:
    """Dynamic int8 quantization: weights per output channel, activations per token (batch-invariant).

    ``op_types`` limits which operators are quantized (default: all that ORT supports, embeddings
    included); ``keep_ffn_output`` leaves the MatMuls after GELU in fp32, whose inputs have outliers.
    Fused ``Attention`` is split first (``unpack_attention``) so that its projection quantizes per token too.
    """
    quantize_attention = op_types is None or "Attention" in op_types
    types = list(op_types) if op_types else None
    if types and quantize_attention:
        types = sorted({*types, "MatMul"} - {"Attention"})
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        model = src
        if quantize_attention:
            model = Path(tmp) / "unpacked.onnx"
            unpack_attention(src, model)
        with quiet_logs():
            quantize_dynamic(
                str(model),
                str(dst),
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=types,
                nodes_to_exclude=ffn_output_matmuls(src) if keep_ffn_output else None,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    per_token_activations(dst)
    return dst


def unpack_attention(src: Path, dst: Path) -> int:
    """Split each fused ``Attention`` into Q, K, V ``MatMul``s and a ``MultiHeadAttention``; returns how many.

    ORT's ``QAttention`` takes one activation scale per tensor; a plain MatMul can be quantized per token.
    """
    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    unpacked: set[str] = set()
    for node in graph.node:
        if node.op_type != "Attention" or node.domain != _MS or len(node.input) != 4:
            nodes.append(node)
            continue
        x, weight, bias, mask_index = node.input
        name = node.name or f"Attention_{len(unpacked)}"
        qkv = [f"{name}_{part}" for part in "qkv"]
        for part, w in zip(qkv, np.split(numpy_helper.to_array(weights[weight]), 3, axis=1), strict=True):
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), f"{part}_weight"))
            nodes.append(helper.make_node("MatMul", [x, f"{part}_weight"], [part], name=f"{part}_MatMul"))
        heads = next(a.i for a in node.attribute if a.name == "num_heads")
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                [*qkv, bias, mask_index],
                list(node.output),
                name=f"{name}_MultiHeadAttention",
                domain=_MS,
                num_heads=heads,
            )
        )
        unpacked.add(weight)
    del graph.node[:]
    graph.node.extend(nodes)
    still_used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name not in unpacked - still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(dst))
    return len(unpacked)


def per_token_activations(path: Path) -> int:
    """Quantize MatMul activations per token, not per tensor, so a row's result ignores its batch and padding.

    Rewrites, in place, each ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul`` of ``quantize_dynamic``
    into a symmetric uint8 quantization with one scale per token (max |x| over the last axis / 127, zero point
    128) feeding ``MatMulIntegerToFloat`` with that [..., 1] scale; returns how many inputs were rewritten.
    """
    model = onnx.load(str(path))
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    producer = {out: node for node in graph.node for out in node.output}
    dims = {init.name: list(init.dims) for init in graph.initializer}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    replaced: set[int] = set()  # ids of the nodes: quantizer names are not guaranteed unique or set
    inserted: dict[int, list[onnx.NodeProto]] = {}
    for dq in (n for n in graph.node if n.op_type == "DynamicQuantizeLinear"):
        x, prefix = dq.input[0], f"{dq.output[0]}_per_token"
        scale, flat_scale, quantized = f"{prefix}_scale", f"{prefix}_scale_1d", f"{prefix}_x"

        chains = {id(m): _dequantize_chain(m, dq, consumers, producer) for m in consumers[dq.output[0]]}
        width = {dims[matmul.input[1]][0] for matmul in consumers[dq.output[0]] if matmul.input[1] in dims}
        if len(width) != 1:
            raise RuntimeError(
                f"{dq.name}: its MatMulIntegers should share one constant weight width, not {width}"
            )
        rows = f"{prefix}_rows_shape"
        graph.initializer.append(numpy_helper.from_array(np.array([-1, width.pop()], np.int64), rows))
        sub = [
            helper.make_node("Abs", [x], [f"{prefix}_abs"]),
            _reduce_max_last(f"{prefix}_abs", f"{prefix}_absmax", opset),
            helper.make_node("Mul", [f"{prefix}_absmax", "per_token_1_127"], [f"{prefix}_scale_raw"]),
            helper.make_node("Max", [f"{prefix}_scale_raw", "per_token_eps"], [scale]),  # all-zero rows
            helper.make_node("Reshape", [scale, "per_token_last"], [flat_scale]),
            helper.make_node("Shape", [flat_scale], [f"{prefix}_rows"]),
            helper.make_node(
                "Expand", ["per_token_zero_point_1d", f"{prefix}_rows"], [f"{prefix}_zero_points"]
            ),
            helper.make_node("Reshape", [x, rows], [f"{prefix}_x_2d"]),
            helper.make_node(
                "QuantizeLinear",
                [f"{prefix}_x_2d", flat_scale, f"{prefix}_zero_points"],
                [f"{prefix}_q_2d"],
                axis=0,
            ),
            helper.make_node("Shape", [x], [f"{prefix}_shape"]),
            helper.make_node("Reshape", [f"{prefix}_q_2d", f"{prefix}_shape"], [quantized]),
        ]
        for matmul in consumers[dq.output[0]]:
            cast, dequantize, scales = chains[id(matmul)]
            weight_scale = next(s for s in scales.input if s != dq.output[1])
            sub.append(
                helper.make_node(
                    "MatMulIntegerToFloat",  # scales its output rows by the [..., 1] activation scale
                    [
                        quantized,
                        matmul.input[1],
                        scale,
                        weight_scale,
                        "per_token_zero_point",
                        matmul.input[3],
                    ],
                    list(dequantize.output),
                    name=f"{matmul.name}_per_token",
                    domain=_MS,
                )
            )
            replaced |= {id(matmul), id(cast), id(dequantize), id(scales)}
        replaced.add(id(dq))
        inserted[id(dq)] = sub
    if not inserted:
        return 0
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e-12 / 127, np.float32), "per_token_eps"),
            numpy_helper.from_array(np.array(1 / 127, np.float32), "per_token_1_127"),
            numpy_helper.from_array(np.array(128, np.uint8), "per_token_zero_point"),
            numpy_helper.from_array(np.array([128], np.uint8), "per_token_zero_point_1d"),
            numpy_helper.from_array(np.array([-1], np.int64), "per_token_last"),
        ]
    )
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes += inserted.get(id(node), [])  # in the quantizer's place: after x, before the matmuls
        if id(node) not in replaced:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))
    return len(inserted)


def _reduce_max_last(x: str, out: str, opset: int) -> onnx.NodeProto:
    """ReduceMax over the last axis, keeping it (opset 18 takes the axes as an input, not an attribute)."""
    if opset >= 18:
        return helper.make_node("ReduceMax", [x, "per_token_last"], [out], keepdims=1)
    return helper.make_node("ReduceMax", [x], [out], keepdims=1, axes=[-1])


def _dequantize_chain(
    matmul: onnx.NodeProto,
    dq: onnx.NodeProto,
    consumers: Mapping[str, list[onnx.NodeProto]],
    producer: Mapping[str, onnx.NodeProto],
) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto]:
    """The Cast, the output Mul and the scale-product Mul that ``quantize_dynamic`` put after ``matmul``."""
    casts = consumers.get(matmul.output[0], []) if matmul.op_type == "MatMulInteger" else []
    muls = consumers.get(casts[0].output[0], []) if len(casts) == 1 and casts[0].op_type == "Cast" else []
    scales = producer.get(muls[0].input[1]) if len(muls) == 1 and muls[0].op_type == "Mul" else None
    if (
        scales is None
        or scales.op_type != "Mul"
        or dq.output[1] not in scales.input
        or list(matmul.input[:1]) != [dq.output[0]]
        or len(matmul.input) != 4
    ):
        raise RuntimeError(
            f"{dq.name}: not quantize_dynamic's DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul"
        )
    return casts[0], muls[0], scales


def ffn_output_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes fed by a GELU (the second matmul of each feed-forward block)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    gelus = {"Gelu", "BiasGelu", "FastGelu"}
    return [n.name for n in graph.node if n.op_type == "MatMul" and producer.get(n.input[0]) in gelus]


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence the progress bars and root-logger warnings of transformers and ORT's quantizer."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level, verbosity = root.level, hf_logging.get_verbosity()
    root.setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        root.setLevel(level)
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
