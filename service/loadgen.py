"""A lean HTTP/1.1 load generator (keep-alive connections on asyncio) for the gateway benchmark."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


class Connection:
    """One keep-alive connection that POSTs a fixed JSON body and reads ``content-length`` responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.request = request

    @classmethod
    async def open(cls, host: str, port: int, path: str, body: bytes) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return cls(reader, writer, head.encode() + body)

    async def post(self) -> int:
        """Send the request; return the response status once its body has been read."""
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


async def sequential(
    host: str, port: int, path: str, body: bytes, requests: int, warmup: int = 20
) -> list[float]:
    """Round-trip times (ms) of one client sending ``requests`` requests one after another."""
    connection = await Connection.open(host, port, path, body)
    try:
        for _ in range(warmup):
            await connection.post()
        out = []
        for _ in range(requests):
            started = time.perf_counter()
            status = await connection.post()
            out.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"{path} answered HTTP {status}")
        return out
    finally:
        await connection.close()


async def concurrent(host: str, port: int, path: str, body: bytes, clients: int, requests: int) -> LoadResult:
    """``clients`` connections sending ``requests`` requests in all, as fast as answers come."""
    result = LoadResult()
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        connection = await Connection.open(host, port, path, body)
        try:
            while remaining > 0:
                remaining -= 1
                try:
                    status = await connection.post()
                except (OSError, asyncio.IncompleteReadError):
                    result.requests += 1
                    result.errors += 1
                    await connection.close()
                    connection = await Connection.open(host, port, path, body)
                    continue
                result.requests += 1
                if status != 200:
                    result.errors += 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result
