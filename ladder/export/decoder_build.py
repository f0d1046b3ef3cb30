"""Build an encoder folder from a causal LM (e.g. Qwen): pooled last hidden states as the embedding.

This is the NVIDIA LLM Router v3 approach: a small decoder's hidden states feed the routing head. The result
has the same files and tensor names as any encoder (``input_ids``, ``attention_mask`` → ``embedding``), so it
is selected by configuration exactly like one. Usage:
``python -m ladder.export.decoder_build HF_DIR NAME [--pooling mean|last] [--max-tokens N] [--force]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ladder.core.encoder import TOKENIZER_FILE, EncoderInfo
from ladder.core.errors import ConfigError, exit_code
from ladder.export.encoder_build import Int8Plan, build_atomically, export_encoder, load_backbone, log
from ladder.export.pooling import Pooling


def build_decoder_encoder(
    hf_dir: Path,
    name: str,
    *,
    pooling: Pooling = "mean",
    max_tokens: int = 512,
    prefix: str = "",
    force: bool = False,
) -> Path:
    """Export the decoder in ``hf_dir`` (config.json, weights, tokenizer.json) as encoder ``name``."""
    hf_dir = Path(hf_dir)
    for needed in ("config.json", TOKENIZER_FILE):
        if not (hf_dir / needed).is_file():
            raise ConfigError(f"{hf_dir} is not a Hugging Face model folder: {needed} is missing")
    config = json.loads((hf_dir / "config.json").read_text())
    pad = config.get("pad_token_id")
    if pad is None:
        pad = config.get("eos_token_id") or 0
    info = EncoderInfo(
        name=name,
        source=f"{config.get('model_type', 'decoder')} hidden states ({pooling} pooling) from {hf_dir}",
        dim=int(config["hidden_size"]),
        pooling=pooling,
        prefix=prefix,
        max_tokens=min(max_tokens, int(config.get("max_position_embeddings", max_tokens))),
        vocab_size=int(config["vocab_size"]),
        pad_id=int(pad[0] if isinstance(pad, list) else pad),
    )

    def fill(tmp: Path, started: float) -> EncoderInfo:
        shutil.copyfile(hf_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        backbone = load_backbone(hf_dir)
        log(name, f"loaded {type(backbone).__name__} from {hf_dir}", started)
        # ORT's transformer fusions target BERT; a decoder keeps ORT's generic graph optimizations.
        return export_encoder(backbone, info, tmp, started, fuse=False, int8=Int8Plan(op_types=("MatMul",)))

    return build_atomically(name, force, fill)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ladder.export.decoder_build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("hf_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--pooling", choices=["mean", "last"], default="mean")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    return exit_code(
        lambda: build_decoder_encoder(
            args.hf_dir, args.name, pooling=args.pooling, max_tokens=args.max_tokens, force=args.force
        )
    )


if __name__ == "__main__":
    sys.exit(main())
