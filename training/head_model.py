"""The head as a torch module: PCA projection, an MLP ensemble and per-model Platt calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    """One ensemble member: reduced embedding -> hidden -> one logit per model."""

    def __init__(self, inputs: int, hidden: int, outputs: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class RouterHead(nn.Module):
    """embedding -> (x - mean) @ components -> mean of member logits -> a*logit + b -> sigmoid."""

    def __init__(
        self,
        mean: np.ndarray,
        components: np.ndarray,
        members: list[MLP],
        scale: np.ndarray,
        bias: np.ndarray,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("components", torch.as_tensor(components, dtype=torch.float32))
        self.members = nn.ModuleList(members)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        reduced = (embedding - self.mean) @ self.components
        stacked = torch.stack([member(reduced) for member in self.members])
        return stacked.mean(dim=0)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(embedding) * self.scale + self.bias)


def export_head(head: RouterHead, path: Path) -> None:
    """Export to ONNX with the named tensors ``embedding`` -> ``p_correct`` and a dynamic batch axis."""
    head.eval()
    dim = int(head.mean.shape[0])  # type: ignore[index]
    example = torch.zeros(2, dim)
    torch.onnx.export(
        head,
        (example,),
        str(path),
        input_names=["embedding"],
        output_names=["p_correct"],
        dynamic_axes={"embedding": {0: "batch"}, "p_correct": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
