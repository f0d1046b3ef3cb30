"""Reading answers in the core: letters, numbers, folded text, and agreement that reads as the vote does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.core.answers import (
    answer_key,
    answers_agree,
    choice_letter,
    final_number,
    fold_text,
    squad_text,
    vote_key,
)

LETTER = st.sampled_from("ABCDEFGHIJ")
LETTER_PHRASINGS = (
    "{L}",
    "{l}",
    "({L})",
    "({l})",
    "{L}.",
    "{L})",
    "**{L}**",
    "The answer is ({L}).",
    "The answer is {L}",
    "Answer: {L}",
    "ANSWER: **{L}**",
    "\\boxed{{{L}}}",
    "Option {L}",
    "{L}. because the others do not fit",
    "After weighing them all, I pick ({L}) in the end.",
)
NUMBER_PHRASINGS = (
    "{plain}",
    "{commas}",
    "${commas}",
    "\\boxed{{{commas}}}",
    "\\boxed{{${plain}}}",
    "So the total is {commas}.",
    "She pays ${commas} in all.",
    "3 apples and 4 pears: the answer is {plain}",
    "Step 1: 12 + 7 = 19.\n#### {commas}",
    "answer: ${commas}",
    "We get 3, then 5, so \\boxed{{{commas}}} (not 8).",
)


def commas(n: int) -> str:
    return f"{n:,}"


PHRASED = [
    p.format(L="C", l="c", plain="1596", commas="1,596") for p in (*LETTER_PHRASINGS, *NUMBER_PHRASINGS)
]
TEXT = st.one_of(st.none(), st.text(max_size=60), st.sampled_from(PHRASED))


@given(TEXT, TEXT)
def test_agreement_is_symmetric(a: str | None, b: str | None) -> None:
    assert answers_agree(a, b) is answers_agree(b, a)


@given(TEXT)
def test_an_answer_never_disagrees_with_itself_unless_it_is_blank(a: str | None) -> None:
    assert (answers_agree(a, a) is not False) is bool(fold_text(a))


@given(LETTER, st.sampled_from(LETTER_PHRASINGS), st.sampled_from(LETTER_PHRASINGS))
def test_a_letter_in_any_phrasing_agrees_with_the_bare_letter(letter: str, one: str, other: str) -> None:
    first, second = one.format(L=letter, l=letter.lower()), other.format(L=letter, l=letter.lower())
    assert choice_letter(first) == letter
    assert answers_agree(first, letter) is True and answers_agree(letter, first) is True
    assert answers_agree(first, second) is True
    assert vote_key(first) == vote_key(letter) == f"choice:{letter}"
    wrong = "ABCDEFGHIJ"[("ABCDEFGHIJ".index(letter) + 1) % 10]
    assert answers_agree(first, wrong) is False


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(NUMBER_PHRASINGS))
def test_a_number_with_commas_dollars_or_boxed_agrees_with_the_plain_number(n: int, phrasing: str) -> None:
    text = phrasing.format(plain=str(n), commas=commas(n))
    assert final_number(text) == n
    assert answers_agree(text, str(n)) is True and answers_agree(str(n), text) is True
    assert vote_key(text) == vote_key(str(n))
    assert answers_agree(text, str(n + 1)) is False


@given(st.text(max_size=80), st.text(max_size=80))
def test_agreement_settles_letters_and_numbers_as_the_vote_does(a: str, b: str) -> None:
    agree = answers_agree(a, b)
    if fold_text(a) and fold_text(b) and answer_key(a) is not None and answer_key(b) is not None:
        assert agree is (vote_key(a) == vote_key(b))


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("#### 1,596", "1596", True),
        ("The answer is (C)", "C", True),
        ("The answer is (C)", "c", True),
        ("\\boxed{1,596}", "$1596.00", True),
        ("The answer is (B), since 3 > 2.", "2", False),  # a letter and a number never agree
        ("   ", "   ", False),
        ("Paris.", "PARIS", True),
        ("1234567", "1,234,568", False),
        ("It is 0.3333333.", "0.333333", True),  # decimals to six significant figures, as the vote reads them
        ("(B)", "b.", True),
        ("Paris", "paris!", True),
        ("Paris", "Lyon", False),
        ("The total is 1,200 apples, so #### 1200", "After adding everything up the answer is 1200.0", True),
        ("The total is 1,200 apples, so #### 1200", "After adding everything up the answer is 1300", False),
        ("", "anything", False),
        (None, "B", False),
        (
            "a long free-text explanation without numbers",
            "another long free-text explanation, no numbers",
            None,
        ),
    ],
)
def test_answers_agree_cases(a: str | None, b: str | None, agree: bool | None) -> None:
    assert answers_agree(a, b) is agree


def test_final_number_prefers_boxed_then_the_marked_number_then_the_last() -> None:
    assert final_number("\\boxed{7} apples; #### 9, then 11") == 7
    assert final_number("She has 12 apples.\n#### 1,018 and 3 more") == 1018
    assert final_number("2 then 3 then -4.5") == -4.5
    assert final_number("no number") is None and final_number(None) is None


def test_the_two_text_foldings_do_different_jobs() -> None:
    assert fold_text("  Paris!  ") == fold_text("paris") == "paris"
    assert fold_text("The Eiffel Tower") == "the eiffel tower"  # articles matter when comparing answers
    assert squad_text("The Eiffel Tower!") == "eiffel tower"  # ...not when finding a reference in one
