"""The remote engine: any server that speaks the OpenAI chat completions API.

Tested against llama-cpp-python's own server (``python -m llama_cpp.server``); written to the
documented behaviour of llama.cpp's ``llama-server`` and vLLM too. Standard library only.

Notes for the next engineer:
- One HTTP connection per request (``http.client``); nothing is kept open between turns.
- The API key comes from the environment (``WALUIGI_DESK_API_KEY``), is sent as a Bearer token
  and is never stored, printed or logged; error texts are scrubbed of it in case a server echoes
  it back.
- Cancel: ``http.client`` reads the body through ``socket.SocketIO``, which refuses every later
  read once a socket timeout has fired ("cannot read from timed out object"), so a reader loop
  with a short socket timeout cannot be resumed. Instead a small watcher thread polls the cancel
  event every 20 ms and shuts the socket down, which wakes the blocked read at once; the reader
  then sees cancel set and returns ``finish_reason="cancelled"``. The socket keeps the long
  ``request_timeout`` so a server that stops sending is reported, not waited on forever.
- Token counting for context fitting, in order of preference: llama-cpp-python's
  ``POST /extras/tokenize``, llama-server's ``POST /tokenize`` (``content``), vLLM's
  ``POST /tokenize`` (``model`` + ``prompt``); if none answers, a cautious estimate of one token
  per 3.5 UTF-8 bytes (English averages about 4 characters a token, so this over-counts a
  little and the context is not overfilled). Each message adds ``PER_MESSAGE_OVERHEAD`` tokens
  for the chat template's role markers, since no server here exposes the template itself.
- Completion tokens come from the final ``usage`` chunk when the server sends one
  (``stream_options.include_usage``), else one per streamed content delta (llama.cpp and vLLM
  send one delta per token).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import os
import socket
import threading
import time
from typing import Any, Sequence
from urllib.parse import urlsplit

from waluigi_desk.core.engine import ChatMessage, EngineInfo, GenParams, GenResult, OnText
from waluigi_desk.errors import EngineError

API_KEY_ENV = "WALUIGI_DESK_API_KEY"
PER_MESSAGE_OVERHEAD = 6  # role markers and separators of a typical chat template
PROMPT_OVERHEAD = 4  # the assistant header the template appends
BYTES_PER_TOKEN = 3.5  # the cautious estimate when the server has no tokenizer endpoint
CANCEL_POLL_S = 0.02
MAX_ERROR_BODY = 64 * 1024
_TOKEN_CACHE_MAX = 4096


def estimate_tokens(text: str) -> int:
    """Cautious token estimate: one token per 3.5 UTF-8 bytes, rounded up."""
    if not text:
        return 0
    return max(1, math.ceil(len(text.encode("utf-8", errors="replace")) / BYTES_PER_TOKEN))


class _Dropped(Exception):
    """The stream ended before the reply did."""


class OpenAIEngine:
    def __init__(
        self,
        base_url: str,
        model: str = "",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        n_ctx: int = 4096,
    ):
        url = (base_url or "").strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(
                f"The server address '{base_url}' is not an http:// or https:// URL "
                "(for example http://127.0.0.1:8080/v1)."
            )
        try:
            port = parts.port
        except ValueError:
            raise EngineError(f"The server address '{base_url}' has an invalid port.") from None
        self.base_url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._root = self._prefix[:-3] if self._prefix.endswith("/v1") else self._prefix
        self._api_key = api_key or None
        self.timeout = float(timeout)
        self.requested_model = model or ""
        self._tokenizer: str | None = None  # "extras" | "llama-server" | "vllm" | None
        self._token_cache: dict[str, int] = {}
        self.info = EngineInfo(
            kind="openai",
            model_name=self.requested_model or "(not loaded)",
            n_ctx=n_ctx,
            gpu_offload=False,
            device_text=f"Remote: {url}" + (f" (model {model})" if model else ""),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> "OpenAIEngine":
        return cls(
            settings.get("base_url"),
            settings.get("remote_model"),
            api_key=os.environ.get(API_KEY_ENV) or None,
            timeout=settings.get("request_timeout"),
            n_ctx=settings.get("n_ctx"),
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEngine({self.base_url!r}, model={self.info.model_name!r})"

    # -- HTTP ---------------------------------------------------------------------------------
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": accept}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _network_error(self, exc: BaseException) -> EngineError:
        where = self.base_url
        if isinstance(exc, ConnectionRefusedError):
            msg = f"Cannot reach the server at {where}: the connection was refused. Is the server running?"
        elif isinstance(exc, socket.gaierror):
            msg = f"Cannot reach the server at {where}: the host name '{self._host}' is unknown."
        elif isinstance(exc, (TimeoutError, socket.timeout)):
            msg = f"The server at {where} did not answer within {self.timeout:g} seconds."
        else:
            msg = f"Cannot reach the server at {where}: {self._scrub(str(exc)) or type(exc).__name__}."
        return EngineError(msg, hint="Check the server address (setting base_url / --base-url).")

    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None
                 ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            data = None if body is None else json.dumps(body).encode("utf-8")
            conn.request(method, path, body=data, headers=self._headers())
            resp = conn.getresponse()
            try:
                payload = resp.read(MAX_ERROR_BODY * 16)
            finally:
                resp.close()
            return resp.status, resp.headers, payload
        except (OSError, http.client.HTTPException) as exc:
            raise self._network_error(exc) from None
        finally:
            conn.close()

    def _server_message(self, body: bytes) -> str:
        text = body[:MAX_ERROR_BODY].decode("utf-8", errors="replace").strip()
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("detail", obj.get("message")))
            if isinstance(err, dict):
                err = err.get("message") or err.get("msg") or json.dumps(err)
            elif isinstance(err, list) and err and isinstance(err[0], dict):
                err = err[0].get("msg") or json.dumps(err[0])
            if err:
                text = str(err)
        text = " ".join(text.split())
        return self._scrub(text[:300] + ("…" if len(text) > 300 else ""))

    def _status_error(self, status: int, headers: Any, body: bytes, what: str) -> EngineError:
        server_msg = self._server_message(body)
        detail = f" The server said: {server_msg}" if server_msg else ""
        if status in (401, 403):
            if self._api_key:
                msg = (f"The server at {self.base_url} refused the API key ({status}) while {what}. "
                       f"Set {API_KEY_ENV} to a key this server accepts.")
            else:
                msg = (f"The server at {self.base_url} needs an API key ({status}) while {what}. "
                       f"Set the environment variable {API_KEY_ENV} to your key.")
            return EngineError(msg)
        if status == 429:
            wait = _retry_after(headers.get("Retry-After") if headers is not None else None)
            when = f" Try again in {wait} second{'s' if wait != 1 else ''}." if wait is not None else " Try again shortly."
            return EngineError(f"The server at {self.base_url} is rate-limiting or busy (429 Too Many "
                               f"Requests) while {what}.{when}{detail}")
        if status == 404:
            return EngineError(f"The server at {self.base_url} answered 404 Not Found while {what}: is "
                               f"the base URL right (it usually ends in /v1) and the model name "
                               f"'{self.info.model_name}' one it serves?{detail}")
        if status >= 500:
            return EngineError(f"The server at {self.base_url} failed with {status} "
                               f"{http.client.responses.get(status, 'error')} while {what}.{detail}")
        return EngineError(f"The server at {self.base_url} rejected the request with {status} "
                           f"{http.client.responses.get(status, '')} while {what}.{detail}")

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        status, headers, body = self._request("GET", f"{self._prefix}/models")
        if status != 200:
            raise self._status_error(status, headers, body, "listing its models")
        try:
            data = json.loads(body)
            entries = [m for m in data["data"] if isinstance(m, dict) and m.get("id")]
        except (ValueError, KeyError, TypeError):
            raise EngineError(
                f"The server at {self.base_url} did not answer GET /models like an OpenAI-compatible "
                "server (no JSON model list). Is the base URL right? It usually ends in /v1."
            ) from None
        ids = [str(m["id"]) for m in entries]
        if not ids:
            raise EngineError(f"The server at {self.base_url} serves no models.")
        want = self.requested_model or ids[0]
        if want not in ids:
            shown = ", ".join(f"'{i}'" for i in ids[:10]) + (" …" if len(ids) > 10 else "")
            raise EngineError(
                f"The server at {self.base_url} has no model '{want}'. It has: {shown}.",
                hint="Set remote_model (or --remote-model) to one of those, or leave it empty for the first.",
            )
        entry = entries[ids.index(want)]
        self.info.model_name = want
        self.info.device_text = f"Remote: {self.base_url} (model {want})"
        server_ctx = entry.get("max_model_len")  # vLLM
        self._tokenizer = self._probe_tokenizer()
        if self._tokenizer == "llama-server" and not isinstance(server_ctx, int):
            server_ctx = self._llama_server_ctx()
        if isinstance(server_ctx, int) and server_ctx > 0:
            self.info.n_ctx = min(self.info.n_ctx, server_ctx)
        self.info.extra = {
            "base_url": self.base_url,
            "tokenizer": f"server ({self._tokenizer})" if self._tokenizer else
            f"estimate (1 token per {BYTES_PER_TOKEN} bytes)",
            "server_n_ctx": server_ctx if isinstance(server_ctx, int) else None,
            "api_key": "set" if self._api_key else "none",
        }

    def _probe_tokenizer(self) -> str | None:
        for kind in ("extras", "llama-server", "vllm"):
            try:
                n = self._server_tokens(kind, "Hello world")
            except EngineError:
                n = None
            if n is not None and n > 0:
                return kind
        return None

    def _llama_server_ctx(self) -> int | None:
        try:
            status, _, body = self._request("GET", f"{self._root}/props")
            props = json.loads(body) if status == 200 else {}
            n = props.get("default_generation_settings", {}).get("n_ctx") or props.get("n_ctx")
            return int(n) if n else None
        except (EngineError, ValueError, TypeError, AttributeError):
            return None

    def _server_tokens(self, kind: str, text: str) -> int | None:
        """Token count from the server's tokenizer endpoint ``kind``; None if it has none."""
        if kind == "extras":
            path, body = f"{self._root}/extras/tokenize", {"input": text, "model": self.info.model_name}
        elif kind == "llama-server":
            path, body = f"{self._root}/tokenize", {"content": text}
        else:
            path, body = f"{self._root}/tokenize", {"model": self.info.model_name, "prompt": text,
                                                      "add_special_tokens": False}
        status, _, payload = self._request("POST", path, body, timeout=min(self.timeout, 30.0))
        if status != 200:
            return None
        try:
            obj = json.loads(payload)
            toks = obj.get("tokens")
            return len(toks) if isinstance(toks, list) else None
        except (ValueError, AttributeError):
            return None

    def close(self) -> None:
        self._token_cache.clear()

    # -- tokens -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        cached = self._token_cache.get(text)
        if cached is not None:
            return cached
        n = None
        if self._tokenizer:
            try:
                n = self._server_tokens(self._tokenizer, text)
            except EngineError:
                n = None  # the server is gone: the estimate keeps the UI going, generate reports it
        if n is None:
            return estimate_tokens(text)
        if len(self._token_cache) >= _TOKEN_CACHE_MAX:
            self._token_cache.clear()
        self._token_cache[text] = n
        return n

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(self.count_tokens(m["content"]) + PER_MESSAGE_OVERHEAD for m in messages) + PROMPT_OVERHEAD

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenParams,
        on_text: OnText,
        cancel: threading.Event,
    ) -> GenResult:
        body: dict[str, Any] = {
            "model": self.info.model_name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed >= 0:
            body["seed"] = params.seed
        t0 = time.perf_counter()
        if cancel.is_set():
            return GenResult("", "cancelled", total_s=0.0)
        try:
            return self._stream(body, messages, on_text, cancel, t0)
        except _RetryWithoutStreamOptions:
            body.pop("stream_options", None)
            return self._stream(body, messages, on_text, cancel, t0)

    def _stream(self, body: dict[str, Any], messages: Sequence[ChatMessage], on_text: OnText,
                cancel: threading.Event, t0: float) -> GenResult:
        out: list[str] = []
        state = {"n": 0, "ttft": 0.0, "finish": None, "usage": None, "done": False}

        def result(reason: str) -> GenResult:
            usage = state["usage"] or {}
            prompt_tokens = usage.get("prompt_tokens")
            if not isinstance(prompt_tokens, int):
                prompt_tokens = self.count_prompt_tokens(messages)
            completion = usage.get("completion_tokens")
            if not isinstance(completion, int):
                completion = state["n"]
            return GenResult(
                text="".join(out),
                finish_reason=reason,
                prompt_tokens=prompt_tokens,
                prompt_tokens_evaluated=prompt_tokens,
                completion_tokens=completion,
                ttft_s=state["ttft"],
                total_s=time.perf_counter() - t0,
            )

        conn = self._connection(self.timeout)
        done = threading.Event()
        lock = threading.Lock()
        sock: list[socket.socket] = []  # kept here: http.client drops conn.sock on Connection: close

        def watch() -> None:
            while not done.is_set():
                if cancel.wait(CANCEL_POLL_S):
                    with lock:
                        if not done.is_set() and sock:
                            try:
                                sock[0].shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass
                    return

        watcher = threading.Thread(target=watch, name="openai-cancel", daemon=True)
        resp: http.client.HTTPResponse | None = None
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise self._network_error(exc) from None
            sock.append(conn.sock)
            watcher.start()
            try:
                conn.request("POST", f"{self._prefix}/chat/completions",
                             body=json.dumps(body).encode("utf-8"),
                             headers=self._headers("text/event-stream"))
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                if cancel.is_set():
                    return result("cancelled")
                raise self._network_error(exc) from None
            if resp.status != 200:
                payload = resp.read(MAX_ERROR_BODY)
                if resp.status in (400, 422) and "stream_options" in body and b"stream_options" in payload:
                    raise _RetryWithoutStreamOptions()
                raise self._status_error(resp.status, resp.headers, payload, "generating a reply")
            ctype = (resp.headers.get("Content-Type") or "").lower()
            if "application/json" in ctype:  # a server that ignored stream: true
                return self._whole_reply(resp, out, state, on_text, result, t0)
            if "text/event-stream" not in ctype:
                raise EngineError(f"The server at {self.base_url} answered with '{ctype or 'no content type'}' "
                                  "instead of a server-sent event stream.")
            try:
                self._read_events(resp, out, state, on_text, cancel, t0)
            except _Dropped:
                if cancel.is_set():
                    return result("cancelled")
                if state["finish"] is not None:
                    return result(_finish(state["finish"]))
                raise EngineError(
                    f"The connection to the server at {self.base_url} was lost in the middle of the "
                    f"reply (after {len(''.join(out))} characters). The text received so far is kept."
                ) from None
            except (TimeoutError, socket.timeout):
                if cancel.is_set():
                    return result("cancelled")
                raise EngineError(
                    f"The server at {self.base_url} stopped sending for {self.timeout:g} seconds in "
                    "the middle of the reply. The text received so far is kept."
                ) from None
            if cancel.is_set() and not state["done"] and state["finish"] is None:
                return result("cancelled")
            return result(_finish(state["finish"]))
        finally:
            with lock:
                done.set()
                if resp is not None:
                    resp.close()
                conn.close()
            if watcher.is_alive():
                watcher.join(timeout=1.0)

    def _whole_reply(self, resp: Any, out: list[str], state: dict[str, Any], on_text: OnText,
                     result: Any, t0: float) -> GenResult:
        try:
            obj = json.loads(resp.read())
            choice = obj["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise EngineError(f"The server at {self.base_url} sent a reply that is not a chat completion.") from None
        state["ttft"] = time.perf_counter() - t0
        if text:
            out.append(text)
            on_text(text)
            state["n"] = 1
        state["usage"] = obj.get("usage") if isinstance(obj.get("usage"), dict) else None
        return result(_finish(choice.get("finish_reason")))

    def _read_events(self, resp: Any, out: list[str], state: dict[str, Any], on_text: OnText,
                     cancel: threading.Event, t0: float) -> None:
        buf = b""
        data_lines: list[str] = []
        while True:
            if cancel.is_set():
                return
            try:
                chunk = resp.read1(65536)
            except (http.client.IncompleteRead, ConnectionError, http.client.HTTPException,
                    ValueError) as exc:  # ValueError: a read after the socket was shut down
                raise _Dropped() from exc
            except (TimeoutError, socket.timeout):
                raise
            except OSError as exc:
                raise _Dropped() from exc
            if not chunk:
                if cancel.is_set():
                    return
                raise _Dropped()
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                raw, buf = buf[:nl], buf[nl + 1 :]
                line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
                if line == "":
                    if cancel.is_set():
                        return  # nothing more reaches on_text once Stop is pressed
                    if data_lines:
                        payload = "\n".join(data_lines)
                        data_lines = []
                        if self._event(payload, out, state, on_text, t0):
                            state["done"] = True
                            return
                    continue
                if line.startswith(":"):
                    continue  # SSE comment / keep-alive
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    data_lines.append(value)
            if len(buf) > 4 * 1024 * 1024:
                raise EngineError(f"The server at {self.base_url} sent a malformed event stream "
                                  "(a line longer than 4 MiB).")

    def _event(self, payload: str, out: list[str], state: dict[str, Any], on_text: OnText, t0: float) -> bool:
        """Handle one SSE event; True when the stream is over."""
        if payload.strip() == "[DONE]":
            return True
        try:
            obj = json.loads(payload)
        except ValueError:
            raise EngineError(
                f"The server at {self.base_url} sent a malformed event (not JSON): "
                f"{self._scrub(payload[:120])!r}. The text received so far is kept."
            ) from None
        if not isinstance(obj, dict):
            raise EngineError(f"The server at {self.base_url} sent a malformed event: {self._scrub(payload[:120])!r}.")
        if "error" in obj:
            raise EngineError(f"The server at {self.base_url} reported an error in the middle of the reply: "
                              f"{self._server_message(payload.encode('utf-8'))}")
        if isinstance(obj.get("usage"), dict):
            state["usage"] = obj["usage"]
        choices = obj.get("choices")
        if choices is None:
            if "usage" in obj:
                return False
            raise EngineError(f"The server at {self.base_url} sent a malformed event (no 'choices'): "
                              f"{self._scrub(payload[:120])!r}.")
        if not isinstance(choices, list):
            raise EngineError(f"The server at {self.base_url} sent a malformed event ('choices' is not a list).")
        for choice in choices[:1]:
            if not isinstance(choice, dict):
                raise EngineError(f"The server at {self.base_url} sent a malformed event (a choice is not an object).")
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if text:
                if not isinstance(text, str):
                    raise EngineError(f"The server at {self.base_url} sent a malformed event (content is not text).")
                if state["n"] == 0:
                    state["ttft"] = time.perf_counter() - t0
                state["n"] += 1
                out.append(text)
                on_text(text)
            if choice.get("finish_reason"):
                state["finish"] = choice["finish_reason"]
        return False


class _RetryWithoutStreamOptions(Exception):
    """An older server rejected ``stream_options``; ask again without it."""


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


def _retry_after(value: str | None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0, math.ceil(when.timestamp() - time.time()))
