"""What is routed on: system prompt plus the latest user turns; unusable text is refused clearly."""

import pytest

from ladder.core.errors import PromptError
from ladder.core.prompt import MAX_PROMPT_CHARS, check_text, routed_text


def test_system_and_latest_user_turns_in_order() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "third"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "user", "content": "fourth"},
    ]
    assert routed_text(messages, user_turns=3) == "You are terse.\n\nsecond\n\nthird\n\nfourth"


def test_anthropic_style_top_level_system() -> None:
    assert routed_text([{"role": "user", "content": "hi"}], system="Be kind.") == "Be kind.\n\nhi"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("bad \udcff byte", "not valid UTF-8"),
        ("x" * (MAX_PROMPT_CHARS + 1), "limit"),
    ],
)
def test_unusable_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        check_text(text)


def test_no_user_message() -> None:
    with pytest.raises(PromptError, match="no user message"):
        routed_text([{"role": "system", "content": "only a system prompt"}])
