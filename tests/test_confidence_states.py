"""The cascade over sets of answers: agreement, per-set calibration from training rows, the answer returned."""

from __future__ import annotations

import numpy as np
import pytest

from ladder.core.rung import RungSettings, answer_to_return
from ladder.training.confidence import fit_confidence
from ladder.training.confidence_plans import StateSettings, play_states
from ladder.training.confidence_states import READS, States, agreement, fit_states, read_masks
from ladder.training.dataset import RoutingData
from ladder.training.importers import import_data
from tests.cascade_tables import two_questions
from tests.support import shared_data


def test_the_returned_answer_is_the_most_confident_one_asked() -> None:
    p = np.array([[0.9, 0.4, 0.6], [0.2, 0.7, 0.95]])
    asked = np.array([[True, True, False], [True, True, False]])
    assert answer_to_return(p, asked).tolist() == [0, 1]  # model 2's 0.95 is ignored: it was not asked


def _table() -> RoutingData:
    """Two questions, three models; the mid model is wrong on both, the small one right on the first."""
    return two_questions(
        [[1, 0, 1], [0, 0, 1]],
        answers=[["B", "(C)", "the answer is B"], ["Paris", "paris!", "Lyon"]],
        confidence_kinds=[["answer_logprob"] * 3, ["self_check_logprob"] * 3],
        confidence_costs=[[0.0] * 3, [5e-4, 5e-3, 5e-2]],
    )


def test_agreement_reads_letters_and_short_text() -> None:
    agree = agreement(_table())
    assert agree[0, 0, 2] == 1 and agree[0, 0, 1] == -1  # "B" and "the answer is B" pick the same letter
    assert agree[1, 0, 1] == 1 and agree[1, 1, 2] == -1 == agree[1, 2, 1]


def test_a_free_confidence_is_always_read_a_paid_one_by_policy() -> None:
    data = _table()
    reads = read_masks(data, data)
    none, cheaper = (reads[READS.index(r)] for r in ("none", "cheaper"))
    assert none[0].all() and not none[1].any()  # question a's confidences came with the answers
    assert cheaper[1].tolist() == [True, False, False]


def _states(held_small: float, held_mid: float) -> States:
    """Hand-set estimates for `_table` (the same under every read policy): the small model first, then the
    mid one."""
    masks, rows, models = 8, 2, 3
    held = np.full((len(READS), masks, rows, models), np.nan)
    ahead = np.full((len(READS), masks, rows, models), np.nan)
    held[:, 0b001, :, 0] = 0.5
    ahead[:, 0b001, :, 1:] = [0.9, 0.1]
    held[:, 0b011, :, :2] = [held_small, held_mid]
    ahead[:, 0b011, :, 2] = 0.0
    prefill = np.array([[0.8, 0.5, 0.3]] * rows)
    return States(prefill, held, ahead, read_masks(_table(), _table()))


def test_the_cascade_returns_the_best_answer_in_hand_not_the_last() -> None:
    data = _table()
    expected = (data.costs.astype(np.float64), np.zeros(data.costs.shape))
    cheaper_reads = StateSettings(RungSettings(0.0, margin=0.0, max_stages=2), READS.index("cheaper"))
    out = play_states(data, _states(held_small=0.8, held_mid=0.3), expected, [cheaper_reads])
    assert out.calls[0].tolist() == [2, 2]
    assert out.correct[0].tolist() == [1, 0]  # the small model's answer, kept over the mid one's
    out = play_states(data, _states(held_small=0.3, held_mid=0.8), expected, [cheaper_reads])
    assert out.correct[0].tolist() == [0, 0]  # the mid one's answer now
    unread = StateSettings(cheaper_reads.rung, READS.index("none"))
    costs = [play_states(data, _states(0.8, 0.3), expected, [s]).cost[0] for s in (cheaper_reads, unread)]
    assert costs[0][0] == costs[1][0] == pytest.approx(1.1e-2)  # free confidences
    # the small model's self-check is read (and paid) under "cheaper", no self-check under "none"
    assert costs[0][1] == pytest.approx(1.1e-2 + 5e-4) and costs[1][1] == pytest.approx(1.1e-2)


def test_per_set_calibration_is_fitted_on_training_rows_only() -> None:
    data = import_data("cascades-llama", shared_data() / "cascades_llama")
    splits = np.array(data.splits)
    train = data.subset(np.flatnonzero(splits == "train")[::6])
    test = data.subset(np.flatnonzero(splits == "test")[::40])
    rng = np.random.default_rng(0)
    prompts = (rng.normal(size=(len(train), 12)), rng.normal(size=(len(test), 12)))
    sides = fit_confidence(train, test, prompts)
    flipped = test.subset(np.arange(len(test)))
    flipped.labels[:] = 1.0 - flipped.labels
    a = fit_states(train, test, sides, prompts)[1]
    b = fit_states(train, flipped, sides, prompts)[1]
    np.testing.assert_array_equal(a.held, b.held)  # held-out labels never reach the fits
    inside = ~np.isnan(a.held[0, 0b11000])
    assert inside[:, 3:].all() and not inside[:, :3].any()
    assert np.isnan(a.ahead[0, 0b11000][:, 3:]).all() and (a.ahead[0, 0b11000][:, :3] > 0).all()
    # two large models that agree make the 70B answer likelier right than when they differ
    agree = agreement(test)[:, 3, 4]
    p70 = a.held[READS.index("none"), 0b11000, :, 3]
    assert p70[agree == 1].mean() > p70[agree == -1].mean() + 0.1
