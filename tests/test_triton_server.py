"""A real tritonserver (cpu flavour) on loopback: readiness and P(correct) parity with the embedded scorer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import triton_helpers as th

from ladder.export.triton_server import TritonServer

TOLERANCE = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def client(cpu_triton: TritonServer) -> Iterator[object]:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(cpu_triton.grpc_url) as c:
        yield c


def test_every_model_is_ready(client: object, cpu_triton: TritonServer) -> None:
    assert cpu_triton.ready()
    for name in ("tokenizer", "encoder", "head", "router", "router_text"):
        assert client.is_model_ready(name), name  # type: ignore[attr-defined]


def _infer_ids(client: object, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    inputs = [grpcclient.InferInput(n, list(ids.shape), "INT64") for n in ("input_ids", "attention_mask")]
    inputs[0].set_data_from_numpy(ids)
    inputs[1].set_data_from_numpy(mask)
    result = client.infer("router", inputs)  # type: ignore[attr-defined]
    return np.asarray(result.as_numpy("p_correct"))


@pytest.mark.parametrize("kind", list(th.PROMPTS))
def test_router_matches_embedded_scorer(client: object, kind: str) -> None:
    encoded = th.tokenizer().encode([th.PROMPTS[kind]])
    got = _infer_ids(client, encoded.input_ids, encoded.attention_mask)
    expected = th.embedded_scorer().score_ids(encoded.input_ids, encoded.attention_mask)
    assert got.shape == (1, len(th.LABELS))
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    if kind == "long":
        assert encoded.lengths[0] == 512 and encoded.truncated[0]
    if kind == "one_token":
        tok = th.tokenizer()
        assert encoded.lengths[0] == len(tok.head) + len(tok.prefix_ids) + 1 + len(tok.tail)


def test_router_text_matches_embedded_scorer(client: object) -> None:
    import tritonclient.grpc as grpcclient

    for text in th.PROMPTS.values():
        data = np.array([[text.encode("utf-8")]], dtype=object)
        item = grpcclient.InferInput("text", [1, 1], "BYTES")
        item.set_data_from_numpy(data)
        got = client.infer("router_text", [item]).as_numpy("p_correct")  # type: ignore[attr-defined]
        encoded = th.tokenizer().encode([text])
        expected = th.embedded_scorer().score_ids(encoded.input_ids, encoded.attention_mask)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def test_router_scores_a_padded_batch(client: object) -> None:
    texts = [th.PROMPTS["english"], th.PROMPTS["japanese"], th.PROMPTS["code"]]
    encoded = th.tokenizer().encode(texts)
    got = _infer_ids(client, encoded.input_ids, encoded.attention_mask)
    expected = th.embedded_scorer().score_ids(encoded.input_ids, encoded.attention_mask)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def test_labels_are_served_as_classification(client: object) -> None:
    import tritonclient.grpc as grpcclient

    encoded = th.tokenizer().encode([th.PROMPTS["english"]])
    inputs = [
        grpcclient.InferInput(n, list(encoded.input_ids.shape), "INT64")
        for n in ("input_ids", "attention_mask")
    ]
    inputs[0].set_data_from_numpy(encoded.input_ids)
    inputs[1].set_data_from_numpy(encoded.attention_mask)
    top = grpcclient.InferRequestedOutput("p_correct", class_count=len(th.LABELS))
    result = client.infer("router", inputs, outputs=[top])  # type: ignore[attr-defined]
    names = {entry.decode().split(":")[2] for entry in result.as_numpy("p_correct").reshape(-1)}
    assert names == set(th.LABELS)
