"""Triton python-backend model that runs an ONNX file with ONNX Runtime on CPU (the ``cpu`` flavour).

Self-contained (``onnxruntime`` and ``numpy`` only). Tensor names come from the model's ``config.pbtxt``;
parameters ``onnx_file`` and ``intra_op_threads`` choose the file and ORT's thread count. Requests that the
dynamic batcher hands over together are run as one batch per distinct input shape (rows are never padded
here, so batching does not change any row's result beyond float rounding), unless ``per_row`` is ``true``:
then every row runs alone, cut to its ``attention_mask`` (dynamic int8 quantisation shares one activation
scale across a batch and its padding; alone, a row's result depends on itself only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


class OnnxRunner:
    """One ORT session; runs many requests, concatenated along the batch axis by input shape."""

    def __init__(
        self, path: Path, inputs: list[str], outputs: list[str], threads: int = 0, per_row: bool = False
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # exact int8 sums on x86 CPUs without VNNI, as ladder.core.encoder.EXACT_INT8 (self-contained here)
        options.add_session_config_entry("session.x64quantprecision", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = inputs
        self.outputs = outputs
        self.per_row = per_row and "attention_mask" in inputs

    def _run_rows(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request, each row run alone up to its last attended position."""
        mask = feeds["attention_mask"]
        rows: list[list[np.ndarray]] = []
        for i in range(mask.shape[0]):
            attended = np.flatnonzero(mask[i])
            width = int(attended[-1]) + 1 if attended.size else 1
            rows.append(self.session.run(self.outputs, {n: feeds[n][i : i + 1, :width] for n in self.inputs}))
        return {
            name: np.ascontiguousarray(np.concatenate([row[k] for row in rows]))
            for k, name in enumerate(self.outputs)
        }

    def run(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Outputs per request, in order; requests whose inputs share shapes run as one batch."""
        if self.per_row:
            return [self._run_rows(feeds) for feeds in requests]
        groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
        for i, feeds in enumerate(requests):
            key = tuple(tuple(feeds[name].shape[1:]) for name in self.inputs)
            groups.setdefault(key, []).append(i)
        results: list[dict[str, np.ndarray]] = [{} for _ in requests]
        for rows in groups.values():
            sizes = [requests[i][self.inputs[0]].shape[0] for i in rows]
            feeds = {name: np.concatenate([requests[i][name] for i in rows]) for name in self.inputs}
            outs = self.session.run(self.outputs, feeds)
            bounds = np.cumsum([0, *sizes])
            for k, i in enumerate(rows):
                results[i] = {
                    name: np.ascontiguousarray(out[bounds[k] : bounds[k + 1]])
                    for name, out in zip(self.outputs, outs, strict=True)
                }
        return results


class TritonPythonModel:
    """Runs ``<version>/<onnx_file>``; inputs and outputs as named in ``config.pbtxt``."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = Path(args["model_repository"]) / args["model_version"] / params.get("onnx_file", "model.onnx")
        self.runner = OnnxRunner(
            path,
            [i["name"] for i in config["input"]],
            [o["name"] for o in config["output"]],
            int(params.get("intra_op_threads", "0")),
            params.get("per_row", "false") == "true",
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.runner.inputs}
            for r in requests
        ]
        try:
            results = self.runner.run(feeds)
        except Exception as exc:  # ORT raises untyped errors; report them per request
            error = pb_utils.TritonError(f"onnxruntime: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in out.items()])
            for out in results
        ]
