"""The locality rule, written once: a sensitive prompt may only reach ``on-prem`` models.

The gateway's dispatcher asks it before every upstream call, ``ladder collect`` before asking a pool model a
question, and the LLM judge before sending a question and its answers to the judge model. Pure functions
over typed values; whether a prompt is sensitive is decided by ``ladder.core.sensitivity``.
"""

from __future__ import annotations

from enum import StrEnum

from ladder.core.errors import NoEligibleModelError
from ladder.core.pool import Locality, ModelSpec


class Refusal(StrEnum):
    """Why a model may not receive a prompt (its value is the reason shown to users and counted in reports)."""

    SENSITIVE = "sensitive: on-prem models only"


class LocalityError(NoEligibleModelError):
    """A sensitive request was about to be sent to a model that is not on-prem (400, nothing is sent)."""


def refusal(model: ModelSpec, sensitive: bool) -> Refusal | None:
    """Why ``model`` may not receive the prompt, or None when it may."""
    if sensitive and model.locality is not Locality.ON_PREM:
        return Refusal.SENSITIVE
    return None


def may_receive(model: ModelSpec, sensitive: bool) -> bool:
    """Whether ``model`` may receive a prompt: any model may, or only on-prem ones when it is sensitive."""
    return refusal(model, sensitive) is None
