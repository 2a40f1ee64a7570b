"""The Engine protocol: one object that owns one model and generates replies.

Implementations: ``llama.LlamaEngine`` (local GGUF through llama-cpp-python), ``scripted.
ScriptedEngine`` (deterministic replies for UI tests) and, for remote servers, ``openai``.
An engine is not thread-safe: one worker thread owns it and calls it.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

ChatMessage = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass
class GenParams:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = -1

    @classmethod
    def from_settings(cls, settings: Any) -> "GenParams":
        return cls(
            temperature=settings.get("temperature"),
            top_p=settings.get("top_p"),
            max_tokens=settings.get("max_tokens"),
            seed=settings.get("seed"),
        )


@dataclass
class GenResult:
    text: str
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0  # tokens actually run through the model (prefix reuse)
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    error: str | None = None

    @property
    def tokens_per_s(self) -> float:
        gen_time = self.total_s - self.ttft_s
        if self.completion_tokens <= 1 or gen_time <= 0:
            return 0.0
        return (self.completion_tokens - 1) / gen_time

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        return d


@dataclass
class EngineInfo:
    kind: str  # "llama" | "openai" | "scripted"
    model_name: str
    model_path: str = ""
    n_ctx: int = 4096
    gpu_offload: bool = False
    gpu_layers: int = 0
    device_text: str = "CPU"
    extra: dict[str, Any] = field(default_factory=dict)


OnText = Callable[[str], None]


@runtime_checkable
class Engine(Protocol):
    info: EngineInfo

    def load(self) -> None:
        """Load the model (slow; call from the worker thread)."""

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` as a message body (for the context meter)."""

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the whole prompt the chat template makes of ``messages``."""

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenParams,
        on_text: OnText,
        cancel: threading.Event,
    ) -> GenResult:
        """Stream a reply; ``on_text`` gets each new piece of text. Returns when the reply ends,
        ``cancel`` is set (finish_reason "cancelled", checked per token) or max_tokens is hit."""

    def close(self) -> None:
        """Free the model."""


def create_engine(settings: Any) -> Engine:
    """The engine the settings ask for (not loaded yet)."""
    kind = settings.get("engine")
    if kind == "openai":
        from waluigi_desk.core.engine.openai import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    from waluigi_desk.core.engine.llama import LlamaEngine

    return LlamaEngine.from_settings(settings)
