"""What a relayed stream has carried so far: its generated text, the usage it reported, its finish reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

from ladder.core.pricing import Usage
from ladder.core.upstream_replies import Chunk
from ladder.gateway.costs import estimated_usage


@dataclass
class StreamTally:
    """Fed every chunk a stream relays; prices the stream when it ends, broken off or not."""

    input_tokens: int  # the routing estimate, for an upstream that reports no usage
    usage: Usage | None = None
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)  # for the span's gen_ai.response.finish_reasons

    def add(self, chunk: Chunk) -> None:
        self.usage = chunk.usage or self.usage
        self.texts.extend(chunk.texts)
        self.finish_reasons.extend(chunk.finish_reasons)

    def estimated_usage(self) -> Usage:
        """The routing estimate in, the streamed text out (an upstream that ignores
        ``stream_options.include_usage``, as llama.cpp does, or a stream that broke off)."""
        return estimated_usage(self.input_tokens, "".join(self.texts))

    def charged_usage(self) -> Usage:
        """The usage the upstream reported, else the estimate: what the stream is charged."""
        return self.usage or self.estimated_usage()
