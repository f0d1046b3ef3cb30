"""A fake upstream misbehaving at the HTTP level: 100-continue, close-delimited bodies, resets, split CRLFs.

Requests are parsed with h11; responses are written as raw bytes, because the point is to send what a
well-behaved server library would not. Every call is logged per model and request key (the last user
message) with the mode it was answered with, so a test or the chaos run can prove nothing was sent twice.
Used by the transport tests and ``ladder.bench.chaos``.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import h11

from ladder.bench import chat_wire
from ladder.core.loopback import Started

RAW_MODES = (
    "ok",
    "continue",  # an unsolicited ``100 Continue`` before the real answer
    "close",  # a body ended by closing the connection (no content-length, no chunking)
    "reset",  # the request is read, then the connection is reset without an answer
    "reset-stream",  # a stream's first events, then a reset
    "crlf",  # a stream with CRLF line ends, every event split between its CR and LF across reads
    "hang",  # no answer until the gateway hangs up
    "500",
    "429",
)


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json(status: int, payload: Mapping[str, Any], extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), **(extra or {})}
    return _head(status, "OK" if status == 200 else "Error", headers) + body


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _events(model: str, crlf: bool) -> list[bytes]:
    words = (chat_wire.chunk(model, {"content": word}) for word in (model, " says", " hi"))
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    events = list(chat_wire.stream(model, words, "stop", usage))
    return [e.replace(b"\n", b"\r\n") for e in events] if crlf else events


class RawUpstream(Started):
    """``POST /{model}/v1/chat/completions`` answered as scripted: per model a queue of modes, then a default.

    ``chooser`` (model, key) -> mode, when set, decides for every call instead (the chaos script).
    """

    def __init__(self) -> None:
        self.scripts: dict[str, deque[str]] = {}
        self.defaults: dict[str, str] = {}
        self.chooser: Callable[[str, str], str] | None = None
        self.calls: Counter[tuple[str, str]] = Counter()  # (model, request key) -> calls
        self.modes_seen: Counter[str] = Counter()
        self.log: list[tuple[str, str, str]] = []  # (model, request key, mode), in arrival order
        self.cancelled = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, model: str, *modes: str, then: str = "ok") -> None:
        assert all(m in RAW_MODES for m in (*modes, then)), modes
        with self._lock:
            self.scripts[model] = deque(modes)
            self.defaults[model] = then

    def clear(self) -> None:
        """Forget scripts, the chooser and every count."""
        with self._lock:
            self.scripts.clear()
            self.defaults.clear()
            self.calls.clear()
            self.modes_seen.clear()
            self.log.clear()
            self.chooser = None
            self.cancelled = 0

    def count(self, model: str) -> int:
        with self._lock:
            return sum(n for (m, _), n in self.calls.items() if m == model)

    def _mode(self, model: str, key: str) -> str:
        with self._lock:
            self.calls[(model, key)] += 1
            if self.chooser is not None:
                mode = self.chooser(model, key)
            else:
                queue = self.scripts.get(model)
                mode = queue.popleft() if queue else self.defaults.get(model, "ok")
            self.modes_seen[mode] += 1
            self.log.append((model, key, mode))
            return mode

    def start(self) -> RawUpstream:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        leftover = b""
        try:
            while True:
                request = await _read_request(reader, leftover)
                if request is None:
                    break
                target, body, leftover = request
                model = target.split("/")[1]
                messages = json.loads(body).get("messages") or [{}]
                key = str(messages[-1].get("content", ""))
                keep = await self._answer(self._mode(model, key), model, json.loads(body), reader, writer)
                if not keep:
                    return
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        writer.close()

    async def _answer(
        self,
        mode: str,
        model: str,
        body: dict[str, object],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Write the answer ``mode`` asks for; False when the connection is finished with."""
        stream = bool(body.get("stream"))
        upstream_model = str(body.get("model", model))
        if mode in ("reset", "reset-stream"):
            if mode == "reset-stream" and stream:
                writer.write(
                    _head(200, "OK", {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
                )
                for event in _events(upstream_model, crlf=False)[:2]:
                    writer.write(_chunked(event))
                await writer.drain()
                await asyncio.sleep(0.01)
            _reset(writer)
            return False
        if mode == "hang":
            data = await reader.read(1)  # the gateway hangs up (or, after its request, sends nothing more)
            if not data:
                with self._lock:
                    self.cancelled += 1
            writer.close()
            return False
        if mode in ("500", "429"):
            error = {"error": {"message": "injected", "type": "server_error"}}
            writer.write(_json(int(mode), error, {"retry-after": "1"} if mode == "429" else None))
            await writer.drain()
            return True
        if mode == "continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if stream:
            crlf = mode == "crlf"
            writer.write(
                _head(200, "OK", {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
            )
            for event in _events(upstream_model, crlf):
                if crlf:  # split every CRLF between two reads
                    for part in event.split(b"\n"):
                        if part:
                            writer.write(_chunked(part))
                            await writer.drain()
                            await asyncio.sleep(0.002)
                        writer.write(_chunked(b"\n"))
                else:
                    writer.write(_chunked(event))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        message = {"role": "assistant", "content": f"{upstream_model} says hi"}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        completion = json.dumps(chat_wire.completion(upstream_model, message, "stop", usage)).encode()
        if mode == "close":
            writer.write(_head(200, "OK", {"content-type": "application/json", "connection": "close"}))
            writer.write(completion[:20])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(completion[20:])
            await writer.drain()
            writer.close()
            return False
        writer.write(_json(200, json.loads(completion)))
        await writer.drain()
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader, leftover: bytes) -> tuple[str, bytes, bytes] | None:
    """One request (target, body, bytes after it), or None when the peer closed the connection."""
    connection = h11.Connection(h11.SERVER)
    if leftover:  # (receiving b"" would tell h11 that the peer closed)
        connection.receive_data(leftover)
    target = ""
    body = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            target = event.target.decode()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return target, body, connection.trailing_data[0]
        elif isinstance(event, h11.ConnectionClosed):
            return None


def random_chooser(seed: int, weights: dict[str, float]) -> Callable[[str, str], str]:
    """A mode per call, drawn with ``weights`` (for the chaos script)."""
    rng = random.Random(seed)
    modes, odds = list(weights), list(weights.values())
    return lambda model, key: rng.choices(modes, odds)[0]
