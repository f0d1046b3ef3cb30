"""``config.pbtxt`` text for each model of the Triton repository, per flavour (``cpu`` or ``gpu``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Flavour = Literal["cpu", "gpu"]
MAX_BATCH = 64
# Tuned max queue delay: long enough that concurrent requests meet in one batch, short next to one
# request's own latency (cpu: ~4 ms at 12 tokens, ~100 ms at 512 on 2 cores; gpu: a 512-token batch of 16
# takes a few ms on an H100), so it costs at most a few percent of p50 at concurrency 1.
QUEUE_DELAY_US: dict[Flavour, int] = {"cpu": 500, "gpu": 1000}
PREFERRED_BATCH: dict[Flavour, tuple[int, ...]] = {"cpu": (2, 4), "gpu": (16, 32)}
TRT_CACHE_DIR = "/tmp/ladder-trt-cache"
WARMUP_TOKENS: dict[Flavour, tuple[int, ...]] = {"cpu": (16,), "gpu": (16, 512)}


@dataclass(frozen=True)
class RepoShape:
    """What the configs depend on: embedding width, number of models, token budget, flavour."""

    flavour: Flavour
    dim: int
    models: int
    max_tokens: int = 512
    max_batch: int = MAX_BATCH
    queue_delay_us: int | None = None

    @property
    def delay(self) -> int:
        return QUEUE_DELAY_US[self.flavour] if self.queue_delay_us is None else self.queue_delay_us


def _tensor(name: str, dtype: str, dims: Sequence[int], extra: str = "") -> str:
    dims_text = ", ".join(str(d) for d in dims)
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {dims_text} ]{extra} }}'


def _io(kind: str, tensors: Sequence[str]) -> str:
    return f"{kind} [\n" + ",\n".join(tensors) + "\n]\n"


def _params(values: Mapping[str, str]) -> str:
    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    return "".join(
        f'parameters: {{ key: "{k}" value: {{ string_value: "{quoted(v)}" }} }}\n' for k, v in values.items()
    )


def encoder_identity(
    name: str, source: str, dim: int, variant: str, engine: str, int8_kernels: str | None = None
) -> dict[str, str]:
    """Model-config parameters naming the encoder a repository serves, read back by clients that need the
    very encoder a checkpoint was trained on (``ladder train --embed-with``, ``ladder/training/triton_embed.py``);
    an int8 graph also names its float kernels (``fast`` or ``same_bits``: `ladder.core.same_bits`)."""
    identity = {
        "ladder_encoder": name,
        "ladder_encoder_source": source,
        "ladder_encoder_dim": str(dim),
        "ladder_encoder_variant": variant,
        "ladder_engine": engine,
    }
    if int8_kernels is not None:
        identity["ladder_int8_kernels"] = int8_kernels
    return identity


def _batching(shape: RepoShape) -> str:
    sizes = ", ".join(str(s) for s in PREFERRED_BATCH[shape.flavour] if s <= shape.max_batch)
    return (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {sizes} ]\n"
        f"  max_queue_delay_microseconds: {shape.delay}\n"
        "}\n"
    )


def _instances(flavour: Flavour) -> str:
    kind = "KIND_GPU" if flavour == "gpu" else "KIND_CPU"
    return f"instance_group [ {{ count: 1 kind: {kind} }} ]\n"


def _header(name: str, shape: RepoShape, backend: str) -> str:
    return f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: {shape.max_batch}\n'


def _trt_accelerator(shape: RepoShape, profile: bool) -> str:
    params = {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(2 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": TRT_CACHE_DIR,
    }
    if profile:  # one engine for every batch and length the batcher forms, instead of one per new shape
        b, t = shape.max_batch, shape.max_tokens
        params |= {
            f"trt_profile_{k}_shapes": f"input_ids:{v},attention_mask:{v}"
            for k, v in (("min", "1x1"), ("opt", f"16x{t // 4}"), ("max", f"{b}x{t}"))
        }
    body = "".join(f'        parameters {{ key: "{k}" value: "{v}" }}\n' for k, v in params.items())
    return (
        "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
        f'      {{\n        name: "tensorrt"\n{body}      }}\n'
        "    ]\n  }\n}\n"
    )


def warmup_file(name: str, tokens: int) -> str:
    """The raw-bytes warm-up file of one encoder input (under ``encoder/warmup/``)."""
    return f"{name}_{tokens}"


def _encoder_warmup(flavour: Flavour) -> str:
    entries = []
    for tokens in WARMUP_TOKENS[flavour]:
        inputs = "".join(
            f'    inputs {{ key: "{n}" value: {{ data_type: TYPE_INT64 dims: [ {tokens} ] '
            f'input_data_file: "{warmup_file(n, tokens)}" }} }}\n'
            for n in ("input_ids", "attention_mask")
        )
        entries.append(f'  {{\n    name: "{tokens}_tokens"\n    batch_size: 1\n{inputs}  }}')
    return "model_warmup [\n" + ",\n".join(entries) + "\n]\n"


def encoder_config(
    shape: RepoShape,
    onnx_file: str = "model.onnx",
    per_row: bool = False,
    identity: Mapping[str, str] | None = None,
    tensorrt: bool = True,
) -> str:
    """The ``encoder`` model: ids and mask → L2-normalised ``embedding``; ``per_row`` (cpu flavour) runs
    each row alone at its own length, so that dynamic int8 quantisation makes it batch-invariant;
    ``tensorrt=False`` (gpu flavour) leaves out the TensorRT accelerator: ONNX Runtime's CUDA provider alone."""
    ids = [_tensor("input_ids", "TYPE_INT64", [-1]), _tensor("attention_mask", "TYPE_INT64", [-1])]
    text = _io("input", ids) + _io("output", [_tensor("embedding", "TYPE_FP32", [shape.dim])])
    if shape.flavour == "gpu":
        head = _header("encoder", shape, "onnxruntime") + f'default_model_filename: "{onnx_file}"\n'
        tail = _trt_accelerator(shape, profile=True) if tensorrt else ""
    else:
        head = _header("encoder", shape, "python")
        tail = _params({"onnx_file": onnx_file, "intra_op_threads": "0", "per_row": str(per_row).lower()})
    tail += _params(identity or {})
    return head + text + _instances(shape.flavour) + _batching(shape) + tail + _encoder_warmup(shape.flavour)


def head_config(shape: RepoShape) -> str:
    """The ``head`` model: ``embedding`` → calibrated ``p_correct`` (labels in ``labels.txt``)."""
    out = _tensor("p_correct", "TYPE_FP32", [shape.models], ' label_filename: "labels.txt"')
    text = _io("input", [_tensor("embedding", "TYPE_FP32", [shape.dim])]) + _io("output", [out])
    warmup = (
        'model_warmup [ { name: "zeros" batch_size: 1 inputs { key: "embedding" value: '
        f"{{ data_type: TYPE_FP32 dims: [ {shape.dim} ] zero_data: true }} }} }} ]\n"
    )
    if shape.flavour == "gpu":
        head = _header("head", shape, "onnxruntime") + 'default_model_filename: "model.onnx"\n'
        extra = ""
    else:
        head = _header("head", shape, "python")
        extra = _params({"onnx_file": "model.onnx", "intra_op_threads": "1"})
    return head + text + _instances(shape.flavour) + _batching(shape) + extra + warmup


def tokenizer_config(shape: RepoShape) -> str:
    """The python-backend ``tokenizer`` step (both flavours): ``text`` → ``input_ids``, ``attention_mask``."""
    ids = [_tensor("input_ids", "TYPE_INT64", [-1]), _tensor("attention_mask", "TYPE_INT64", [-1])]
    text = _io("input", [_tensor("text", "TYPE_STRING", [1])]) + _io("output", ids)
    return _header("tokenizer", shape, "python") + text + "instance_group [ { count: 1 kind: KIND_CPU } ]\n"


def _step(model: str, inputs: Sequence[str], outputs: Sequence[str]) -> str:
    maps = "".join(f'      input_map {{ key: "{n}" value: "{n}" }}\n' for n in inputs)
    maps += "".join(f'      output_map {{ key: "{n}" value: "{n}" }}\n' for n in outputs)
    return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{maps}    }}'


def ensemble_config(shape: RepoShape, name: str, from_text: bool) -> str:
    """``router`` (ids → ``p_correct``) or ``router_text`` (raw text → ``p_correct``)."""
    ids = ("input_ids", "attention_mask")
    inputs = (
        [_tensor("text", "TYPE_STRING", [1])] if from_text else [_tensor(n, "TYPE_INT64", [-1]) for n in ids]
    )
    out = _tensor("p_correct", "TYPE_FP32", [shape.models], ' label_filename: "labels.txt"')
    steps = [_step("encoder", ids, ["embedding"]), _step("head", ["embedding"], ["p_correct"])]
    if from_text:
        steps.insert(0, _step("tokenizer", ["text"], ids))
    return (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {shape.max_batch}\n'
        + _io("input", inputs)
        + _io("output", [out])
        + "ensemble_scheduling {\n  step [\n"
        + ",\n".join(steps)
        + "\n  ]\n}\n"
    )


def encoder_plan_config(shape: RepoShape, identity: Mapping[str, str] | None = None) -> str:
    """The ``encoder`` as a TensorRT engine (``model.plan``, built on the target by ``trtexec``)."""
    ids = [_tensor("input_ids", "TYPE_INT64", [-1]), _tensor("attention_mask", "TYPE_INT64", [-1])]
    text = _io("input", ids) + _io("output", [_tensor("embedding", "TYPE_FP32", [shape.dim])])
    head = f'name: "encoder"\nplatform: "tensorrt_plan"\nmax_batch_size: {shape.max_batch}\n'
    tail = _params(identity or {}) + _encoder_warmup("gpu")
    return head + text + _instances("gpu") + _batching(shape) + tail


def repository_configs(
    shape: RepoShape,
    identity: Mapping[str, str],
    *,
    per_row: bool = False,
    tensorrt_plan: bool = False,
    tensorrt: bool = True,
) -> dict[str, str]:
    """Every model's ``config.pbtxt`` of a repository, by model name: what an export writes, and what a gpu
    run checks for wiring before anything is built (``per_row``, ``tensorrt``: as in ``encoder_config``)."""
    encoder = (
        encoder_plan_config(shape, identity)
        if tensorrt_plan
        else encoder_config(shape, per_row=per_row, identity=identity, tensorrt=tensorrt)
    )
    return {
        "tokenizer": tokenizer_config(shape),
        "encoder": encoder,
        "head": head_config(shape),
        "router": ensemble_config(shape, "router", False),
        "router_text": ensemble_config(shape, "router_text", True),
    }
