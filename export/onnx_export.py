"""Generic ONNX steps shared by every export: torch module → named ONNX graph → fused graph → int8 graph."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from torch.jit._trace import TracerWarning

OPSET = 17

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
    """Dynamic int8 quantization, per output channel (per-tensor loses too much accuracy on these models).

    ``op_types`` limits which operators are quantized (default: all that ORT supports, embeddings
    included); ``keep_ffn_output`` leaves the MatMuls after GELU in fp32, whose inputs have outliers.
    """
    with quiet_logs():
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(op_types) if op_types else None,
            nodes_to_exclude=ffn_output_matmuls(src) if keep_ffn_output else None,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


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
