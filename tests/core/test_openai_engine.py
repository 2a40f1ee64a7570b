"""OpenAIEngine against a tiny stub server on 127.0.0.1 (errors a real server will not produce
on demand: 401, 429, 5xx, malformed events, a dropped or stalled stream)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from waluigi_desk.core.engine import GenParams, create_engine
from waluigi_desk.core.engine.openai import API_KEY_ENV, OpenAIEngine, _retry_after, estimate_tokens
from waluigi_desk.errors import EngineError


def _chunk(content=None, finish=None):
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class Stub:
    """What the stub serves; tests change the attributes."""

    def __init__(self):
        self.models = ["alpha", "beta"]
        self.chat = "ok"  # see Handler.do_POST
        self.tokenize = None  # None | "llama-server"
        self.key = None  # the API key the stub requires
        self.max_model_len = None
        self.requests: list[tuple[str, dict, dict]] = []  # (path, headers, json body)
        self.disconnected = threading.Event()
        self.release = threading.Event()


def make_handler(stub: Stub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # keep test output quiet
            pass

        def _json(self, status, obj, headers=()):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self):
            if stub.key and self.headers.get("Authorization") != f"Bearer {stub.key}":
                self._json(401, {"error": {"message": "Invalid API key", "type": "auth"}})
                return False
            return True

        def do_GET(self):
            stub.requests.append((self.path, dict(self.headers), {}))
            if not self._authorised():
                return
            if self.path == "/v1/models":
                data = [{"id": m, "object": "model"} for m in stub.models]
                if stub.max_model_len:
                    for d in data:
                        d["max_model_len"] = stub.max_model_len
                self._json(200, {"object": "list", "data": data})
            else:
                self._json(404, {"detail": "Not Found"})

        def _sse_start(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()

        def _event(self, obj):
            data = obj if isinstance(obj, str) else json.dumps(obj)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}")
            stub.requests.append((self.path, dict(self.headers), body))
            if not self._authorised():
                return
            if self.path == "/tokenize" and stub.tokenize == "llama-server":
                # llama-server: one token per word, to tell it from the estimate
                return self._json(200, {"tokens": list(range(len(body["content"].split())))})
            if self.path != "/v1/chat/completions":
                return self._json(404, {"detail": "Not Found"})
            mode = stub.chat
            if mode == "429":
                return self._json(429, {"error": {"message": "Rate limit reached"}}, [("Retry-After", "7")])
            if mode == "500":
                return self._json(500, {"error": {"message": "CUDA out of memory"}})
            if mode == "old-server" and "stream_options" in body:
                return self._json(400, {"error": {"message": "Unknown field stream_options"}})
            if mode == "json":
                return self._json(200, {"choices": [{"message": {"role": "assistant", "content": "Whole reply."},
                                                     "finish_reason": "stop"}],
                                        "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
            self._sse_start()
            if mode in ("ok", "old-server"):
                self.wfile.write(b": keep-alive comment\n\n")
                for piece in ("Hello", ", ", "world"):
                    self._event(_chunk(piece))
                self._event(_chunk(None, "length" if body.get("max_tokens") == 3 else "stop"))
                if "stream_options" in body:
                    self._event({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 3}})
                self._event("[DONE]")
            elif mode == "malformed":
                self._event(_chunk("Partial"))
                self._event("{this is not json")
            elif mode == "no-choices":
                self._event({"something": "else"})
            elif mode == "error-event":
                self._event(_chunk("Hi"))
                self._event({"error": {"message": "slot unavailable"}})
            elif mode == "drop":
                self._event(_chunk("Once upon"))
                self._event(_chunk(" a time"))
                # then the connection just closes: no finish_reason, no [DONE]
            elif mode == "stall":
                self._event(_chunk("Thinking"))
                time.sleep(1.5)
            elif mode == "hang":
                self._event(_chunk("Thinking"))
                stub.release.wait(10)
            elif mode == "forever":
                deadline = time.monotonic() + 10
                i = 0
                try:
                    while time.monotonic() < deadline:
                        self._event(_chunk(f"w{i} "))
                        i += 1
                        time.sleep(0.03)
                except OSError:
                    stub.disconnected.set()

    return Handler


@pytest.fixture
def stub():
    s = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(s))
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    s.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield s
    s.release.set()
    server.shutdown()
    server.server_close()
    t.join(timeout=5)


def collect(engine, max_tokens=64, cancel=None, messages=None):
    pieces: list[str] = []
    r = engine.generate(messages or [{"role": "user", "content": "hi"}], GenParams(max_tokens=max_tokens, seed=3),
                        pieces.append, cancel or threading.Event())
    return r, pieces


def loaded(stub, **kw):
    e = OpenAIEngine(stub.url, timeout=kw.pop("timeout", 5.0), **kw)
    e.load()
    return e


def test_streams_deltas_with_usage_and_picks_first_model(stub):
    e = loaded(stub)
    assert e.info.model_name == "alpha"
    assert e.info.kind == "openai" and not e.info.gpu_offload
    assert e.info.device_text == f"Remote: {stub.url} (model alpha)"
    r, pieces = collect(e)
    assert pieces == ["Hello", ", ", "world"]
    assert r.text == "Hello, world" and r.finish_reason == "stop"
    assert (r.prompt_tokens, r.completion_tokens) == (21, 3)  # from the usage chunk
    path, headers, body = stub.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "alpha" and body["max_tokens"] == 64 and body["seed"] == 3
    assert "Authorization" not in headers


def test_length_finish_reason(stub):
    r, _ = collect(loaded(stub), max_tokens=3)
    assert r.finish_reason == "length"


def test_wrong_model_names_the_ones_it_has(stub):
    e = OpenAIEngine(stub.url, "gamma")
    with pytest.raises(EngineError) as ei:
        e.load()
    msg = ei.value.message
    assert "'gamma'" in msg and "'alpha'" in msg and "'beta'" in msg


def test_unreachable_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    e = OpenAIEngine(f"http://127.0.0.1:{port}/v1", timeout=2.0)
    with pytest.raises(EngineError) as ei:
        e.load()
    assert "Cannot reach the server" in ei.value.message and str(port) in ei.value.message
    with pytest.raises(EngineError, match="Cannot reach"):
        collect(e)


def test_bad_url_is_a_clear_error():
    with pytest.raises(EngineError, match="not an http"):
        OpenAIEngine("localhost:8080")
    with pytest.raises(EngineError, match="invalid port"):
        OpenAIEngine("http://127.0.0.1:99999/v1")


def test_401_without_and_with_a_wrong_key(stub, monkeypatch, settings):
    stub.key = "right-key"
    with pytest.raises(EngineError) as ei:
        OpenAIEngine(stub.url).load()
    assert "needs an API key (401)" in ei.value.message and API_KEY_ENV in ei.value.message
    monkeypatch.setenv(API_KEY_ENV, "wrong-secret-123")
    settings.override("engine", "openai")
    settings.override("base_url", stub.url)
    e = create_engine(settings)
    assert isinstance(e, OpenAIEngine)
    with pytest.raises(EngineError) as ei:
        e.load()
    assert "refused the API key (401)" in ei.value.message
    assert "wrong-secret-123" not in ei.value.message and "wrong-secret-123" not in repr(e)
    monkeypatch.setenv(API_KEY_ENV, "right-key")
    e = create_engine(settings)
    e.load()
    r, _ = collect(e)
    assert r.text == "Hello, world"
    assert stub.requests[-1][1]["Authorization"] == "Bearer right-key"
    assert "right-key" not in json.dumps(e.info.extra) and "right-key" not in e.info.device_text


def test_429_reports_retry_after(stub):
    e = loaded(stub)
    stub.chat = "429"
    with pytest.raises(EngineError) as ei:
        collect(e)
    assert "429" in ei.value.message and "Try again in 7 seconds" in ei.value.message
    assert "Rate limit reached" in ei.value.message


def test_retry_after_forms():
    assert _retry_after("12") == 12
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past


def test_5xx_carries_the_server_message(stub):
    e = loaded(stub)
    stub.chat = "500"
    with pytest.raises(EngineError) as ei:
        collect(e)
    assert "500 Internal Server Error" in ei.value.message and "CUDA out of memory" in ei.value.message


def test_malformed_event_raises_after_streaming_what_came(stub):
    e = loaded(stub)
    stub.chat = "malformed"
    pieces: list[str] = []
    with pytest.raises(EngineError) as ei:
        e.generate([{"role": "user", "content": "hi"}], GenParams(), pieces.append, threading.Event())
    assert "malformed event" in ei.value.message
    assert pieces == ["Partial"]
    stub.chat = "no-choices"
    with pytest.raises(EngineError, match="no 'choices'"):
        collect(e)
    stub.chat = "error-event"
    with pytest.raises(EngineError, match="slot unavailable"):
        collect(e)


def test_dropped_stream_raises(stub):
    e = loaded(stub)
    stub.chat = "drop"
    pieces: list[str] = []
    with pytest.raises(EngineError) as ei:
        e.generate([{"role": "user", "content": "hi"}], GenParams(), pieces.append, threading.Event())
    assert "lost in the middle of the reply" in ei.value.message
    assert "".join(pieces) == "Once upon a time"


def test_stalled_stream_times_out(stub):
    e = loaded(stub, timeout=0.3)
    stub.chat = "stall"
    with pytest.raises(EngineError, match="stopped sending for 0.3 seconds"):
        collect(e)


def test_cancel_closes_the_stream(stub):
    e = loaded(stub)
    stub.chat = "forever"
    cancel = threading.Event()
    pieces: list[str] = []

    def on_text(p):
        pieces.append(p)
        if len(pieces) == 3:
            threading.Timer(0.05, cancel.set).start()

    box = {}
    worker = threading.Thread(target=lambda: box.update(r=e.generate(
        [{"role": "user", "content": "hi"}], GenParams(), on_text, cancel)))
    worker.start()
    worker.join(timeout=5)  # the stub would stream for 10 s: returning means the stream closed
    assert not worker.is_alive()
    assert box["r"].finish_reason == "cancelled"
    assert box["r"].text == "".join(pieces) and len(pieces) >= 3
    assert stub.disconnected.wait(5), "the server never saw the connection close"


def test_cancel_wakes_a_read_that_is_waiting_for_data(stub):
    e = loaded(stub, timeout=30)
    stub.chat = "hang"  # one piece, then nothing for 10 s
    cancel = threading.Event()
    box = {}
    worker = threading.Thread(target=lambda: box.update(r=collect(e, cancel=cancel)))
    worker.start()
    time.sleep(0.3)
    cancel.set()
    worker.join(timeout=5)
    assert not worker.is_alive(), "cancel did not interrupt the blocked read"
    r, pieces = box["r"]
    assert r.finish_reason == "cancelled" and pieces == ["Thinking"]


def test_cancel_set_before_start_sends_nothing(stub):
    e = loaded(stub)
    n = len(stub.requests)
    cancel = threading.Event()
    cancel.set()
    r, pieces = collect(e, cancel=cancel)
    assert r.finish_reason == "cancelled" and pieces == [] and len(stub.requests) == n


def test_server_that_rejects_stream_options_is_asked_again(stub):
    e = loaded(stub)
    stub.chat = "old-server"
    r, _ = collect(e)
    assert r.text == "Hello, world" and r.completion_tokens == 3  # counted: no usage chunk
    assert "stream_options" not in stub.requests[-1][2]


def test_non_streaming_answer_is_accepted(stub):
    e = loaded(stub)
    stub.chat = "json"
    r, pieces = collect(e)
    assert pieces == ["Whole reply."] and r.finish_reason == "stop" and r.prompt_tokens == 11


def test_token_counting_server_tokenizer_or_estimate(stub):
    e = loaded(stub)
    assert e.info.extra["tokenizer"].startswith("estimate")
    assert e.count_tokens("") == 0
    assert e.count_tokens("abcdefg") == estimate_tokens("abcdefg") == 2
    assert estimate_tokens("x" * 35) == 10
    stub.tokenize = "llama-server"
    stub.max_model_len = 1024
    e = OpenAIEngine(stub.url, n_ctx=4096)
    e.load()
    assert e.info.extra["tokenizer"] == "server (llama-server)"
    assert e.info.n_ctx == 1024  # clamped to what the server reports
    assert e.count_tokens("one two three four five six seven") == 7
    msgs = [{"role": "system", "content": "a b"}, {"role": "user", "content": "c d e"}]
    assert e.count_prompt_tokens(msgs) > 5
    n = len(stub.requests)
    e.count_tokens("one two three four five six seven")
    assert len(stub.requests) == n  # cached


def test_chat_session_keeps_partial_reply_when_the_stream_drops(stub, store, settings):
    from waluigi_desk.core.chat import ChatSession

    e = loaded(stub)
    stub.chat = "drop"
    session = ChatSession(store, e, settings)
    cid = session.new_conversation()
    turn = session.send(cid, "Tell me a story", lambda p: None)
    assert turn.error and "lost in the middle of the reply" in turn.error
    reply = store.get_message(turn.reply_message_id)
    assert reply.status == "interrupted" and reply.content == "Once upon a time"
    assert reply.meta.get("engine") == "openai"
