"""Training embeddings through a real tritonserver (cpu flavour) equal the in-process ones; clear refusals."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import triton_helpers as th
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ladder, shared_data

from ladder.core.home import encoder_dir
from ladder.core.loopback import free_port
from ladder.export.triton_server import TritonServer
from ladder.training import embed as embed_module
from ladder.training.dataset import read_canonical
from ladder.training.embed import InProcessEmbedder, embed_texts
from ladder.training.triton_embed import (
    TritonEmbedder,
    TritonEmbedError,
    TritonEmbedSettings,
    grpc_address,
    served_encoder,
)

# Same ONNX file and ONNX Runtime settings, each row run alone (int8, per_row) on both sides: only the two
# environments' ORT builds differ, so the embeddings agree to float noise.
TOLERANCE = 1e-5
TEXTS = [
    *th.PROMPTS.values(),
    "日本語の文章をベクトルに変換します。",
    "机器学习模型如何处理长文本？",
    "Route this to the cheapest model that can answer it.",
    "¿Cuál es la capital de Australia?",
    "",
]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh Ladder home (empty embedding cache) that still sees the built encoders."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "encoders").symlink_to(encoder_dir(th.ENCODER).parent)
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@functools.cache
def _in_process() -> np.ndarray:
    th.require_encoder()
    return InProcessEmbedder(th.ENCODER, "int8").embed(TEXTS)


def _embedder(url: str, **kwargs: Any) -> TritonEmbedder:
    return TritonEmbedder(TritonEmbedSettings(url, **kwargs), encoder_dir(th.ENCODER))


def _inference_count(server: TritonServer) -> int:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics("encoder", as_json=True)
    return int(stats["model_stats"][0]["inference_count"])


def _rows_served_since(server: TritonServer, before: int, expected: int, timeout_s: float = 10.0) -> int:
    """Rows Triton counted since ``before``, once the count has reached ``expected`` and stayed put.

    Triton updates its statistics after the response is sent, so a client may read them a batch behind."""
    deadline = time.monotonic() + timeout_s
    served = _inference_count(server) - before
    while served < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        served = _inference_count(server) - before
    time.sleep(0.2)  # a duplicate batch still in flight would land now
    return _inference_count(server) - before


def test_triton_embeddings_equal_in_process(cpu_triton: TritonServer) -> None:
    expected = _in_process()
    before = _inference_count(cpu_triton)
    with _embedder(f"triton://{cpu_triton.grpc_url}", batch_rows=3, in_flight=4) as embedder:
        assert embedder.variant == "int8" and embedder.cache_tag == "triton:onnxruntime-cpu:int8"
        got = embedder.embed(TEXTS)
    assert got.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    assert _rows_served_since(cpu_triton, before, len(TEXTS)) == len(TEXTS)  # every row by Triton, none twice


def test_cache_and_resume_on_triton(
    cpu_triton: TritonServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are cached as they finish: a run interrupted mid-way redoes only the unfinished part."""
    monkeypatch.setattr(embed_module, "PART", 4)
    seen: list[int] = []
    with _embedder(f"grpc://{cpu_triton.grpc_url}") as triton:

        class Flaky:
            cache_tag = triton.cache_tag

            def __init__(self, fail_at: int | None) -> None:
                self.fail_at = fail_at

            def embed(self, texts: Sequence[str], tick: Any = None) -> np.ndarray:
                if len(seen) == self.fail_at:
                    raise KeyboardInterrupt
                seen.append(len(texts))
                return triton.embed(texts, tick)

        with pytest.raises(KeyboardInterrupt):
            embed_texts(TEXTS, th.ENCODER, "int8", embedder=Flaky(fail_at=2))
        assert seen == [4, 4]
        progress: list[tuple[int, int]] = []
        first = embed_texts(
            TEXTS, th.ENCODER, "int8", embedder=Flaky(None), progress=lambda s, d, t: progress.append((d, t))
        )
        assert seen == [4, 4, len(TEXTS) - 8]  # only the unfinished part was embedded again
        assert progress[0] == (0, len(TEXTS)) and progress[-1] == (len(TEXTS), len(TEXTS))
        assert not list((home / "cache" / "embeddings" / "parts").glob("*.npy"))  # parts folded into one
        again = embed_texts(TEXTS, th.ENCODER, "int8", embedder=Flaky(0))  # a cache hit: no call at all
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, _in_process(), atol=TOLERANCE, rtol=0)
    assert len(list((home / "cache" / "embeddings").glob("*.npy"))) == 1


def test_in_process_cache_resumes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Triton the same cache and resume: an interrupted run keeps its finished parts."""
    th.require_encoder()
    monkeypatch.setattr(embed_module, "PART", 3)
    texts = ["short", "a bit longer text", "これは日本語です", "数据", "x", "the longest text of them all"]
    local = InProcessEmbedder(th.ENCODER, "int8")
    calls: list[int] = []

    class Stopping:
        cache_tag = ""

        def embed(self, chunk: Sequence[str], tick: Any = None) -> np.ndarray:
            if len(calls) == 1:
                raise KeyboardInterrupt
            calls.append(len(chunk))
            return local.embed(chunk, tick)

    with pytest.raises(KeyboardInterrupt):
        embed_texts(texts, th.ENCODER, "int8", embedder=Stopping())
    assert len(list((home / "cache" / "embeddings" / "parts").glob("*.npy"))) == 1
    resumed = embed_texts(texts, th.ENCODER, "int8", embedder=local)  # embeds only the second part
    assert not list((home / "cache" / "embeddings" / "parts").glob("*.npy"))
    # equal up to float rounding: a part embeds its texts in batches other than one call's
    np.testing.assert_allclose(resumed, local.embed(texts), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(embed_texts(texts, th.ENCODER, "int8"), resumed)  # the default, cached
    assert embed_texts([], th.ENCODER, "int8", use_cache=False).shape == (0, 384)


class _FlakyProxy:
    """A gRPC server on loopback in front of Triton that answers the first ``failures`` infer calls with
    UNAVAILABLE (a restarting or overloaded server), and forwards everything else."""

    def __init__(self, target: str, failures: int) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        self.failures = failures
        self.calls = 0
        channel = grpc.insecure_channel(target)
        upstream = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        proxy = self

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
            def ServerLive(self, request: Any, context: Any) -> Any:
                return upstream.ServerLive(request)

            def ModelReady(self, request: Any, context: Any) -> Any:
                return upstream.ModelReady(request)

            def ModelConfig(self, request: Any, context: Any) -> Any:
                return upstream.ModelConfig(request)

            def ModelInfer(self, request: Any, context: Any) -> Any:
                proxy.calls += 1
                if proxy.calls <= proxy.failures:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "server restarting")
                return upstream.ModelInfer(request)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)
        self.port = free_port()
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)


def test_transient_errors_are_retried(cpu_triton: TritonServer) -> None:
    proxy = _FlakyProxy(cpu_triton.grpc_url, failures=3)
    try:
        with _embedder(f"triton://127.0.0.1:{proxy.port}", batch_rows=4, in_flight=2, backoff_s=0.01) as emb:
            got = emb.embed(TEXTS)
            assert emb.retried == 3
        proxy.failures = proxy.calls + 100
        with (
            _embedder(f"triton://127.0.0.1:{proxy.port}", retries=1, backoff_s=0.01) as emb,
            pytest.raises(TritonEmbedError, match=r"after 2 attempts: StatusCode.UNAVAILABLE"),
        ):
            emb.embed(TEXTS[:2])
    finally:
        proxy.stop()
    np.testing.assert_allclose(got, _in_process(), atol=TOLERANCE, rtol=0)


def test_refuses_unreachable_missing_model_and_other_encoder(cpu_triton: TritonServer) -> None:
    with pytest.raises(TritonEmbedError, match="is unreachable"):
        _embedder(f"triton://127.0.0.1:{free_port()}").connect()
    with pytest.raises(TritonEmbedError, match=r"no ready model 'embedder'.*encoder, head, router"):
        _embedder(f"triton://{cpu_triton.grpc_url}", model="embedder").connect()
    with pytest.raises(TritonEmbedError, match="no 'embedding' output"):
        _embedder(f"triton://{cpu_triton.grpc_url}", model="router").connect()
    other = encoder_dir("all-minilm-l6-v2")
    if not (other / "encoder.json").is_file():
        pytest.skip("all-minilm-l6-v2 is not built")
    embedder = TritonEmbedder(TritonEmbedSettings(f"triton://{cpu_triton.grpc_url}"), other)
    with pytest.raises(TritonEmbedError, match=r"serves encoder multilingual-e5-small.*all-minilm-l6-v2"):
        embedder.connect()
    embedder.close()


def test_urls_and_configs_without_identity() -> None:
    assert grpc_address("triton://gpu-box:9001") == "gpu-box:9001"
    assert grpc_address("grpc://10.0.0.7") == "10.0.0.7:8001"
    with pytest.raises(TritonEmbedError, match="gRPC endpoint; give triton://gpu-box:8001"):
        grpc_address("http://gpu-box:8000")
    with pytest.raises(TritonEmbedError, match="expected triton://HOST:PORT"):
        grpc_address("gpu-box:8001")
    config = {"output": [{"name": "embedding", "dims": ["384"]}], "max_batch_size": 64}
    with pytest.raises(TritonEmbedError, match=r"does not say which encoder.*re-export"):
        served_encoder(config, "encoder")


def _tiny_csv(path: Path, questions: int = 24) -> Path:
    """A canonical CSV of real MMLU-Pro questions and two models' real outcomes."""
    data = shared_data() / "mmlu_pro"
    texts: dict[str, str] = {}
    with (data / "questions.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            texts[str(row["question_id"])] = row["question"]
            if len(texts) == questions:
                break
    models = ("Llama-2-7b-hf", "Meta-Llama-3_1-70B-Instruct")
    with gzip.open(data / "outputs_long.csv.gz", "rt", encoding="utf-8") as raw, path.open("w") as out:
        writer = csv.writer(out)
        writer.writerow(["question_id", "question", "model", "correct"])
        for row in csv.DictReader(raw):
            if row["question_id"] in texts and row["model"] in models:
                writer.writerow([row["question_id"], texts[row["question_id"]], row["model"], row["correct"]])
    return path


def test_cli_train_embeds_on_triton(cpu_triton: TritonServer, home: Path, tmp_path: Path) -> None:
    data = _tiny_csv(tmp_path / "tiny.csv")
    args = ["train", "--data", str(data), "--members", "2", "--pca-dims", "4"]
    before = _inference_count(cpu_triton)
    url = f"triton://{cpu_triton.grpc_url}"
    ladder(*args, "--out", str(tmp_path / "triton"), "--embed-with", url, check=True)
    assert _rows_served_since(cpu_triton, before, 24) == 24  # every question embedded by Triton
    manifest = json.loads((tmp_path / "triton" / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == th.ENCODER and manifest["encoder"]["variant"] == "int8"
    # what the head was trained on (the run's cache entry) equals the in-process embeddings
    (cached,) = (home / "cache" / "embeddings").glob("*.npy")
    questions = list(read_canonical([data]).questions)  # the order training embeds them in
    got = np.load(cached)
    assert got.shape == (len(questions), 384)
    in_process = InProcessEmbedder(th.ENCODER, "int8").embed(questions)
    np.testing.assert_allclose(got, in_process, atol=TOLERANCE, rtol=0)
    refused = ladder(*args, "--out", str(tmp_path / "x"), "--embed-with", f"triton://127.0.0.1:{free_port()}")
    assert refused.returncode == 2 and "is unreachable" in refused.stderr
    assert not (tmp_path / "x").exists()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=700))
def test_every_chunk_of_the_embedding_order_spans_all_lengths(texts: list[str]) -> None:
    """Progress stays even (its ETA true): each chunk holds short and long texts, and every text once."""
    order = embed_module._interleaved_by_length(texts)
    assert sorted(order.tolist()) == list(range(len(texts)))
    lengths = np.array([len(t) for t in texts])
    chunks = [order[i : i + embed_module.CHUNK] for i in range(0, len(texts), embed_module.CHUNK)]
    count = len(chunks)
    for chunk in chunks:
        # each chunk takes every count-th text in length order, so its longest is among the `count` longest
        assert lengths[chunk].max() >= np.sort(lengths)[-count]
