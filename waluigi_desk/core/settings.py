"""One typed settings schema.

Every setting is declared once here (name, type, default, bounds, description). The settings
dialog, the command line and the detector panel are built from this list. Values live in the
store's ``settings`` table; a change goes out to listeners as ``changed(name)`` (the UI turns that
into one Qt signal). Detectors register their own ``detector.<name>.enabled`` / ``.threshold``
settings through :func:`register`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    group: str = "General"
    restart: bool = False  # True when the change only applies after a model reload / restart

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this setting's type, or raise ValueError with a clear message."""
        if self.name == "gpu_layers":
            return coerce_gpu_layers(value)
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low in ("1", "true", "yes", "on"):
                        v: Any = True
                    elif low in ("0", "false", "no", "off"):
                        v = False
                    else:
                        raise ValueError
                else:
                    v = bool(value)
            elif self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                v = int(value)
            elif self.type is float:
                v = float(value)
            else:
                v = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: {value!r} is not a valid {self.type.__name__}") from None
        if self.minimum is not None and v < self.minimum:
            raise ValueError(f"{self.name}: {v} is below the minimum {self.minimum}")
        if self.maximum is not None and v > self.maximum:
            raise ValueError(f"{self.name}: {v} is above the maximum {self.maximum}")
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"{self.name}: {v!r} is not one of {', '.join(self.choices)}")
        return v


def coerce_gpu_layers(value: Any) -> str | int:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"gpu_layers: {value!r} must be 'auto' or a whole number") from None
    if n < -1:
        raise ValueError("gpu_layers: must be 'auto', -1 (all) or a number of layers >= 0")
    return n


DEFAULT_SYSTEM_PROMPT = "You are a helpful, honest and kind assistant."

SCHEMA: dict[str, Setting] = {}


def register(setting: Setting) -> Setting:
    SCHEMA[setting.name] = setting
    return setting


for _s in (
    Setting("model_path", str, "", "GGUF model file; empty means the default SmolLM2-135M-Instruct.",
            group="Model", restart=True),
    Setting("gpu_layers", str, "auto",
            "Layers offloaded to the GPU: 'auto' (all when this build supports offload, else 0) "
            "or a number; -1 means all.", group="Model", restart=True),
    Setting("n_ctx", int, 4096, "Context size in tokens (clamped to the model's trained context).",
            256, 131072, group="Model", restart=True),
    Setting("n_threads", int, 0, "CPU threads for generation; 0 means one per core.", 0, 256,
            group="Model", restart=True),
    Setting("flash_attn", bool, True, "Flash attention (faster prompt processing).",
            group="Model", restart=True),
    Setting("temperature", float, 0.7, "Sampling temperature; 0 is greedy.", 0.0, 2.0,
            group="Sampling"),
    Setting("top_p", float, 0.95, "Nucleus sampling: keep the smallest set of tokens whose "
            "probability adds up to this.", 0.0, 1.0, group="Sampling"),
    Setting("max_tokens", int, 512, "Longest reply in tokens.", 1, 32768, group="Sampling"),
    Setting("seed", int, -1, "Sampling seed; -1 picks a new one each reply.", -1, 2**31 - 1,
            group="Sampling"),
    Setting("system_prompt", str, DEFAULT_SYSTEM_PROMPT,
            "System prompt for new conversations without a persona.", group="Chat"),
    Setting("send_with_ctrl_enter", bool, False,
            "Send with Ctrl+Enter (Enter then makes a new line).", group="Chat"),
    Setting("theme", str, "system", "Colour theme.", choices=("system", "light", "dark"),
            group="Chat"),
    Setting("nudge_turns", int, 12, "Suggest a fresh context after this many turns.", 1, 10000,
            group="Hygiene"),
    Setting("nudge_context_share", float, 0.75,
            "Suggest a fresh context when this share of the context is used.", 0.05, 1.0,
            group="Hygiene"),
    Setting("engine", str, "llama", "Which engine generates replies.",
            choices=("llama", "openai"), group="Engine", restart=True),
    Setting("base_url", str, "http://127.0.0.1:8080/v1",
            "Base URL of an OpenAI-compatible server (engine 'openai').", group="Engine",
            restart=True),
    Setting("remote_model", str, "", "Model name on the remote server (engine 'openai').",
            group="Engine", restart=True),
    Setting("request_timeout", float, 60.0, "Seconds to wait for a remote server.", 1.0, 3600.0,
            group="Engine"),
):
    register(_s)


@dataclass
class Settings:
    """Typed view of the settings table; thread-safe; notifies listeners by name."""

    store: Any = None  # a core.store.Store, or None for in-memory settings (tests, CLI overrides)
    _overrides: dict[str, Any] = field(default_factory=dict)
    _listeners: list[Callable[[str], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.store is not None:
            for name, raw in self.store.load_settings().items():
                spec = SCHEMA.get(name)
                if spec is None:
                    continue  # a setting of a newer or older version: keep it in the table only
                try:
                    self._cache[name] = spec.coerce(json.loads(raw))
                except (ValueError, json.JSONDecodeError):
                    continue  # a bad stored value falls back to the default

    def get(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        if name in self._cache:
            return self._cache[name]
        try:
            return SCHEMA[name].default
        except KeyError:
            raise KeyError(f"unknown setting {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def set(self, name: str, value: Any) -> Any:
        spec = SCHEMA.get(name)
        if spec is None:
            raise KeyError(f"unknown setting {name!r}")
        v = spec.coerce(value)
        with self._lock:
            old = self.get(name)
            self._cache[name] = v
            self._overrides.pop(name, None)
        if self.store is not None:
            self.store.save_setting(name, json.dumps(v))
        if old != v:
            for fn in list(self._listeners):
                fn(name)
        return v

    def override(self, name: str, value: Any) -> None:
        """Set for this process only (command-line flags); never written to the store."""
        self._overrides[name] = SCHEMA[name].coerce(value)

    def on_change(self, fn: Callable[[str], None]) -> None:
        self._listeners.append(fn)

    def as_dict(self) -> dict[str, Any]:
        return {name: self.get(name) for name in SCHEMA}
