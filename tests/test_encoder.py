"""The routing-time encoder: tokenizer budget and prefix, batching, int8 vs fp32, invalid inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HfTokenizer

from ladder.core.encoder import EncoderInfo, EncoderNotBuilt, OnnxEncoder, Tokenizer
from ladder.core.errors import ConfigError, PromptError

TEXTS = [
    "How do I reverse a linked list in C?",
    "東京の天気はどうですか？明日は雨が降りますか。",
    "请解释一下量子纠缠的基本原理。",
    "ok",
    "",
    "Résumez cet article en trois phrases, s'il vous plaît.",
]


@pytest.fixture(scope="session")
def e5_tokenizer(e5_dir: Path) -> Tokenizer:
    return Tokenizer(e5_dir)


@pytest.fixture(scope="session")
def e5_int8(e5_dir: Path) -> OnnxEncoder:
    return OnnxEncoder(e5_dir, "int8", threads=2)


def test_short_texts_match_plain_tokenization_with_prefix(e5_dir: Path, e5_tokenizer: Tokenizer) -> None:
    plain = HfTokenizer.from_file(str(e5_dir / "tokenizer.json"))
    encoded = e5_tokenizer.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        expected = plain.encode("query: " + text).ids
        assert encoded.input_ids[i, : encoded.lengths[i]].tolist() == expected
        assert encoded.lengths[i] == len(expected)
        assert not encoded.truncated[i]
    assert encoded.input_ids.shape == (len(TEXTS), max(encoded.lengths))
    assert encoded.attention_mask.sum(axis=1).tolist() == encoded.lengths
    assert encoded.input_ids.dtype == np.int64 and encoded.attention_mask.dtype == np.int64


def test_long_text_keeps_its_end_prefix_and_specials(e5_dir: Path, e5_tokenizer: Tokenizer) -> None:
    plain = HfTokenizer.from_file(str(e5_dir / "tokenizer.json"))
    question = "So what is the capital of Australia?"
    text = "Filler sentence about nothing in particular. " * 2000 + question
    encoded = e5_tokenizer.encode([text, "short"])
    ids = encoded.input_ids[0].tolist()
    prefix = plain.encode("query:", add_special_tokens=False).ids
    end = plain.encode(question, add_special_tokens=False).ids
    assert encoded.lengths[0] == 512 and encoded.truncated == [True, False]
    assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>
    assert ids[1 : 1 + len(prefix)] == prefix
    assert ids[-1 - len(end) : -1] == end
    # The windowed tokenization equals the tail of the full one.
    full = plain.encode(text, add_special_tokens=False).ids
    assert ids[1 + len(prefix) : -1] == full[-(512 - 2 - len(prefix)) :]


def test_huge_text_is_fast_and_budget_is_respected(e5_dir: Path, e5_tokenizer: Tokenizer) -> None:
    text = "x" * 50 + "漢字かな交じり文。" * 200_000  # 1.8 M characters, no whitespace
    encoded = e5_tokenizer.encode([text])
    assert encoded.lengths == [512] and encoded.truncated == [True]
    small = Tokenizer(e5_dir, max_tokens=32).encode([text])
    assert small.lengths == [32]
    assert Tokenizer(e5_dir, max_tokens=4096).max_tokens == 512  # capped at the encoder's limit


def test_japanese_and_chinese_have_no_unknown_tokens(e5_tokenizer: Tokenizer) -> None:
    encoded = e5_tokenizer.encode(TEXTS[1:3])
    assert 3 not in encoded.input_ids[encoded.attention_mask == 1]  # <unk> is id 3


def test_batching_equals_one_by_one(e5_dir: Path, e5_int8: OnnxEncoder) -> None:
    fp32 = OnnxEncoder(e5_dir, "fp32", threads=2)
    together = fp32.embed(TEXTS, batch_size=4)
    alone = np.concatenate([fp32.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # int8 runs each row alone by default, so a batch equals one by one; run batched, dynamic quantisation
    # shares one activation scale across rows and padding: close to fp32, but not the same as alone.
    q_together = e5_int8.embed(TEXTS, batch_size=4)
    q_alone = np.concatenate([e5_int8.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(q_together, q_alone, atol=1e-6)
    assert np.min(np.sum(q_alone * alone, axis=1)) > 0.98
    batched = OnnxEncoder(e5_dir, "int8", threads=2, per_row=False).embed(TEXTS, batch_size=4)
    assert np.min(np.sum(batched * alone, axis=1)) > 0.98


def test_int8_is_close_to_fp32_and_normalized(e5_dir: Path, e5_int8: OnnxEncoder) -> None:
    fp32 = OnnxEncoder(e5_dir, "fp32", threads=2).embed(TEXTS)
    int8 = e5_int8.embed(TEXTS)
    assert int8.shape == (len(TEXTS), 384) and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert np.min(np.sum(int8 * fp32, axis=1)) >= 0.99
    # Paraphrases across languages sit closer than unrelated texts.
    weather = e5_int8.embed(["What will the weather be like in Tokyo tomorrow?"])[0]
    assert float(int8[1] @ weather) > float(int8[0] @ weather)


def test_embed_keeps_input_order_and_handles_empty_lists(e5_int8: OnnxEncoder) -> None:
    forward = e5_int8.embed(TEXTS, batch_size=2)
    backward = e5_int8.embed(TEXTS[::-1], batch_size=2)[::-1]
    assert np.min(np.sum(forward * backward, axis=1)) > 0.99
    assert e5_int8.embed([]).shape == (0, 384)


def test_invalid_inputs_are_refused(e5_dir: Path, e5_tokenizer: Tokenizer, e5_int8: OnnxEncoder) -> None:
    with pytest.raises(TypeError):
        e5_tokenizer.encode("a bare string")
    with pytest.raises(PromptError, match="string"):
        e5_tokenizer.encode(["fine", 42])  # type: ignore[list-item,unused-ignore]
    with pytest.raises(PromptError, match="UTF-8"):
        e5_tokenizer.encode(["bad \udcff surrogate"])
    ids = np.zeros((1, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        e5_int8.embed_ids(ids, np.ones((1, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="token ids"):
        e5_int8.embed_ids(ids + 10**7, np.ones_like(ids))
    with pytest.raises(ValueError, match="exceeds"):
        e5_int8.embed_ids(np.zeros((1, 513), dtype=np.int64), np.ones((1, 513), dtype=np.int64))
    with pytest.raises(ValueError, match="variant"):
        OnnxEncoder(e5_dir, "fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        e5_int8.embed(["x"], batch_size=0)


def test_missing_encoder_says_how_to_build_it(tmp_path: Path) -> None:
    missing = tmp_path / "multilingual-e5-small"
    with pytest.raises(EncoderNotBuilt, match=r"python -m ladder.export\.encoder_build multilingual-e5-small"):
        OnnxEncoder(missing)
    missing.mkdir()
    (missing / "encoder.json").write_text('{"name": "x"}')
    with pytest.raises(ConfigError, match="invalid encoder description"):
        EncoderInfo.load(missing)
