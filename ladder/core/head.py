"""The P(correct) head run with ONNX Runtime: embedding in, calibrated P(correct) per model out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ladder.core.errors import CheckpointError


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Shared ORT options: full graph optimisation, bounded threads, quiet logs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


class OnnxHead:
    """Runs ``head.onnx`` (input ``embedding``, output ``p_correct``)."""

    def __init__(self, path: Path, threads: int | None = 1) -> None:
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors
            raise CheckpointError(f"{path}: cannot load the ONNX head ({exc})") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if "embedding" not in inputs or "p_correct" not in outputs:
            raise CheckpointError(f"{path}: the head must map `embedding` to `p_correct`")
        self.dim = int(inputs["embedding"].shape[1])

    def predict(self, embedding: np.ndarray) -> np.ndarray:
        if embedding.ndim != 2 or embedding.shape[1] != self.dim:
            raise CheckpointError(
                f"the head expects embeddings of width {self.dim}, got shape {tuple(embedding.shape)}"
            )
        (p,) = self.session.run(["p_correct"], {"embedding": embedding.astype(np.float32, copy=False)})
        return np.asarray(p, dtype=np.float32)
