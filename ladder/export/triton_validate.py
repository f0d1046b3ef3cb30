"""Check a Triton model repository's wiring offline: every ``config.pbtxt`` parses, ensembles name real tensors.

Configs are parsed with Triton's own ``ModelConfig`` message (``tritonclient``, the ``triton`` extra) and
protobuf's text format, so a misspelt field is an error here rather than at ``tritonserver`` start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.core.errors import ConfigError, LadderError

CONFIG_FILE = "config.pbtxt"


class RepositoryInvalid(LadderError):
    """A model repository's configs do not parse or an ensemble names a tensor no model has."""


@dataclass(frozen=True)
class Tensor:
    """One input or output of a model: its name, Triton data type and dims (after the batch axis)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelSummary:
    """What the checks need from one parsed ``config.pbtxt``."""

    name: str
    kind: str  # the backend or platform ("onnxruntime", "tensorrt_plan", "python", "ensemble")
    max_batch: int
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    steps: tuple[tuple[str, dict[str, str], dict[str, str]], ...]  # (model, input_map, output_map)
    parameters: dict[str, str]


def _model_config() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise ConfigError(
            "checking a Triton repository needs tritonclient: pip install 'ladder-router[triton]'"
        ) from exc
    return model_config_pb2


def parse_config(text: str, source: str = CONFIG_FILE) -> ModelSummary:
    """Parse one ``config.pbtxt`` with Triton's ``ModelConfig`` (unknown fields are errors)."""
    from google.protobuf import text_format

    pb = _model_config()
    try:
        config = text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise RepositoryInvalid(f"{source}: {exc}") from exc

    def tensors(items: Iterable[Any]) -> dict[str, Tensor]:
        return {t.name: Tensor(t.name, pb.DataType.Name(t.data_type), tuple(int(d) for d in t.dims)) for t in items}

    steps = tuple(
        (step.model_name, dict(step.input_map), dict(step.output_map)) for step in config.ensemble_scheduling.step
    )
    return ModelSummary(
        name=config.name,
        kind=config.platform or config.backend,
        max_batch=int(config.max_batch_size),
        inputs=tensors(config.input),
        outputs=tensors(config.output),
        steps=steps,
        parameters={key: value.string_value for key, value in config.parameters.items()},
    )


def load_repository(repository: Path) -> dict[str, ModelSummary]:
    """Every model folder of ``repository`` (a folder holding ``config.pbtxt``), parsed, by folder name."""
    models = {}
    for config in sorted(Path(repository).glob(f"*/{CONFIG_FILE}")):
        summary = parse_config(config.read_text(encoding="utf-8"), str(config))
        if summary.name != config.parent.name:
            raise RepositoryInvalid(f"{config}: name {summary.name!r} differs from its folder")
        models[summary.name] = summary
    if not models:
        raise RepositoryInvalid(f"{repository}: no */{CONFIG_FILE}")
    return models


def _ensemble_problems(ensemble: ModelSummary, models: Mapping[str, ModelSummary]) -> list[str]:
    problems = []
    available = dict(ensemble.inputs)  # tensor name in the ensemble → its type, as produced so far
    for model_name, input_map, output_map in ensemble.steps:
        where = f"{ensemble.name} → {model_name}"
        step = models.get(model_name)
        if step is None:
            problems.append(f"{where}: no model {model_name!r} in the repository")
            continue
        if step.max_batch < ensemble.max_batch:
            problems.append(f"{where}: max_batch_size {step.max_batch} < the ensemble's {ensemble.max_batch}")
        for own, outer in input_map.items():
            if own not in step.inputs:
                problems.append(f"{where}: {model_name} has no input {own!r}")
            elif outer not in available:
                problems.append(f"{where}: {outer!r} is neither an ensemble input nor an earlier output")
            elif available[outer].dtype != step.inputs[own].dtype:
                problems.append(
                    f"{where}: {outer!r} is {available[outer].dtype}, {model_name}.{own} wants {step.inputs[own].dtype}"
                )
        missing = set(step.inputs) - set(input_map)
        if missing:
            problems.append(f"{where}: inputs {sorted(missing)} are not mapped")
        for own, outer in output_map.items():
            if own not in step.outputs:
                problems.append(f"{where}: {model_name} has no output {own!r}")
            else:
                available[outer] = step.outputs[own]
    for name, tensor in ensemble.outputs.items():
        if name not in available:
            problems.append(f"{ensemble.name}: output {name!r} is produced by no step")
        elif available[name].dtype != tensor.dtype or available[name].dims != tensor.dims:
            problems.append(f"{ensemble.name}: output {name!r} is declared {tensor}, produced {available[name]}")
    return problems


def validate_repository(repository: Path, ensembles: Iterable[str] = ("router",)) -> dict[str, ModelSummary]:
    """Parse every config and check each named ensemble's wiring; raise ``RepositoryInvalid`` listing all."""
    models = load_repository(repository)
    problems = []
    for name in ensembles:
        ensemble = models.get(name)
        if ensemble is None or ensemble.kind != "ensemble":
            problems.append(f"{repository}: no ensemble {name!r}")
        else:
            problems += _ensemble_problems(ensemble, models)
    if problems:
        raise RepositoryInvalid("; ".join(problems))
    return models
