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


class NeighbourVote(nn.Module):
    """P(correct): similarity-weighted known labels of the k nearest training questions (small PCA space)."""

    mean: torch.Tensor
    basis: torch.Tensor
    bank: torch.Tensor
    hits: torch.Tensor
    known: torch.Tensor
    prior: torch.Tensor

    def __init__(
        self,
        mean: np.ndarray,
        basis: np.ndarray,
        bank: np.ndarray,
        labels: np.ndarray,
        prior: np.ndarray,
        k: int,
        temperature: float,
    ) -> None:
        super().__init__()
        known = ~np.isnan(labels)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32))
        self.register_buffer("bank", torch.as_tensor(bank, dtype=torch.float32))
        self.register_buffer("hits", torch.as_tensor(np.nan_to_num(labels), dtype=torch.float32))
        self.register_buffer("known", torch.as_tensor(known, dtype=torch.float32))
        self.register_buffer("prior", torch.as_tensor(prior, dtype=torch.float32))
        self.k = min(k, len(bank))
        self.temperature = temperature

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        query = (embedding - self.mean) @ self.basis
        query = query / query.norm(dim=1, keepdim=True).clamp(min=1e-8)
        similarity, nearest = torch.topk(query @ self.bank.T, self.k, dim=1)
        weights = torch.exp((similarity - similarity[:, :1]) / self.temperature).unsqueeze(2)
        hits = (weights * self.hits[nearest]).sum(dim=1)
        counts = (weights * self.known[nearest]).sum(dim=1)
        return torch.where(counts > 1e-9, hits / counts.clamp(min=1e-9), self.prior.expand_as(hits))


class RouterHead(nn.Module):
    """embedding -> blend of the MLP ensemble's and the neighbours' P(correct) -> Platt calibration.

    MLP: (x - mean) @ components -> mean of member logits -> sigmoid. The blend w * vote + (1 - w) * mlp is
    calibrated per model as sigmoid(a * logit(blend) + b).
    """

    mean: torch.Tensor
    components: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        mean: np.ndarray,
        components: np.ndarray,
        members: list[MLP],
        scale: np.ndarray,
        bias: np.ndarray,
        vote: NeighbourVote | None = None,
        vote_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("components", torch.as_tensor(components, dtype=torch.float32))
        self.members = nn.ModuleList(members)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))
        self.vote = vote
        self.vote_weight = vote_weight if vote is not None else 0.0

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        reduced = (embedding - self.mean) @ self.components
        stacked = torch.stack([member(reduced) for member in self.members])
        return stacked.mean(dim=0)

    def blended(self, embedding: torch.Tensor) -> torch.Tensor:
        """The uncalibrated blend, as a logit."""
        p = torch.sigmoid(self.logits(embedding))
        if self.vote is not None and self.vote_weight > 0:
            p = self.vote_weight * self.vote(embedding) + (1 - self.vote_weight) * p
        p = p.clamp(1e-4, 1 - 1e-4)
        return torch.log(p) - torch.log1p(-p)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.blended(embedding) * self.scale + self.bias)


def export_head(head: RouterHead, path: Path) -> None:
    """Export to ONNX with the named tensors ``embedding`` -> ``p_correct`` and a dynamic batch axis."""
    head.eval()
    dim = int(head.mean.shape[0])
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
