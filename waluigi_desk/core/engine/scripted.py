"""A deterministic engine for fast UI tests: replies come from a script, streamed word by word."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from waluigi_desk.core.engine import ChatMessage, EngineInfo, GenParams, GenResult, OnText


class ScriptedEngine:
    """Each call to ``generate`` streams the next scripted reply (or ``reply_fn(messages)``).

    ``delay`` seconds pass between pieces so tests can stop a reply mid-stream;
    ``fail_after`` raises after that many pieces (a crash mid-reply)."""

    def __init__(
        self,
        replies: Sequence[str] = ("Hello! How can I help you today?",),
        *,
        reply_fn: Callable[[Sequence[ChatMessage]], str] | None = None,
        delay: float = 0.0,
        n_ctx: int = 4096,
        fail_after: int | None = None,
        load_delay: float = 0.0,
    ):
        self.replies = list(replies)
        self.reply_fn = reply_fn
        self.delay = delay
        self.fail_after = fail_after
        self.load_delay = load_delay
        self.calls: list[list[ChatMessage]] = []
        self._i = 0
        self.info = EngineInfo(kind="scripted", model_name="scripted", n_ctx=n_ctx, device_text="CPU (scripted)")

    def load(self) -> None:
        if self.load_delay:
            time.sleep(self.load_delay)

    def count_tokens(self, text: str) -> int:
        # about four characters a token, like real tokenizers on English text
        return max(1, (len(text) + 3) // 4) if text else 0

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(self.count_tokens(m["content"]) + 4 for m in messages) + 2

    def next_reply(self, messages: Sequence[ChatMessage]) -> str:
        if self.reply_fn is not None:
            return self.reply_fn(messages)
        reply = self.replies[min(self._i, len(self.replies) - 1)]
        self._i += 1
        return reply

    def generate(self, messages: Sequence[ChatMessage], params: GenParams, on_text: OnText,
                 cancel: threading.Event) -> GenResult:
        self.calls.append([dict(m) for m in messages])
        reply = self.next_reply(messages)
        t0 = time.perf_counter()
        pieces = [w + " " for w in reply.split(" ")]
        pieces[-1] = pieces[-1][:-1]
        out, ttft, reason = [], 0.0, "stop"
        for i, piece in enumerate(pieces):
            if cancel.is_set():
                reason = "cancelled"
                break
            if i >= params.max_tokens:
                reason = "length"
                break
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("scripted engine failure")
            if self.delay:
                time.sleep(self.delay)
            if i == 0:
                ttft = time.perf_counter() - t0
            out.append(piece)
            on_text(piece)
        return GenResult(
            text="".join(out),
            finish_reason=reason,
            prompt_tokens=self.count_prompt_tokens(messages),
            prompt_tokens_evaluated=self.count_prompt_tokens(messages),
            completion_tokens=len(out),
            ttft_s=ttft,
            total_s=time.perf_counter() - t0,
        )

    def close(self) -> None:
        pass
