"""OpenAIEngine against a real OpenAI-compatible server: llama-cpp-python's own
(``python -m llama_cpp.server``) serving the default model on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from waluigi_desk.core.engine import GenParams
from waluigi_desk.core.engine.openai import OpenAIEngine
from waluigi_desk.errors import EngineError

pytest.importorskip("uvicorn", reason="llama-cpp-python's server extra is not installed")
pytestmark = pytest.mark.slow

ALIAS = "smollm2"
READY_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_path, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", ALIAS,
                 "--n_ctx", "2048", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log_path, encoding="utf-8", errors="replace") as f:
                    pytest.fail(f"llama_cpp.server exited with {self.proc.returncode}:\n{f.read()[-3000:]}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        pytest.fail(f"llama_cpp.server did not become ready within {READY_TIMEOUT_S} s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(default_model_path, tmp_path_factory):
    s = Server(default_model_path, tmp_path_factory.mktemp("server") / "server.log")
    yield s
    s.stop()


@pytest.fixture
def engine(server):
    e = OpenAIEngine(server.url, n_ctx=2048, timeout=30)
    e.load()
    yield e
    e.close()


def test_load_picks_the_served_model_and_its_tokenizer(engine, server, llama_engine):
    assert engine.info.model_name == ALIAS  # remote_model empty: the first (only) one
    assert engine.info.device_text == f"Remote: {server.url} (model {ALIAS})"
    assert engine.info.extra["tokenizer"] == "server (extras)"
    text = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓"
    assert engine.count_tokens(text) == llama_engine.count_tokens(text)  # the same tokenizer


def test_streams_a_reply(engine):
    pieces: list[str] = []
    r = engine.generate([{"role": "user", "content": "Say hi"}], GenParams(temperature=0.0, max_tokens=24, seed=1),
                        pieces.append, threading.Event())
    assert len(pieces) >= 2 and r.text == "".join(pieces) and r.text.strip()
    assert r.finish_reason in ("stop", "length")
    assert 1 <= r.completion_tokens <= 24 and r.prompt_tokens > 5
    assert 0 < r.ttft_s <= r.total_s


def test_cancel_mid_stream(engine):
    cancel = threading.Event()
    pieces: list[str] = []

    def on_text(p):
        pieces.append(p)
        if len(pieces) == 3:
            cancel.set()

    r = engine.generate([{"role": "user", "content": "Write a very long story about a castle."}],
                        GenParams(max_tokens=1500, seed=2), on_text, cancel)
    assert r.finish_reason == "cancelled"
    assert r.text == "".join(pieces)
    # nothing reaches on_text after the cancel (the stub tests check the connection closes)
    assert len(pieces) == 3
    # and the server is still fine for the next request
    r2 = engine.generate([{"role": "user", "content": "Say hi"}], GenParams(max_tokens=8), lambda p: None,
                         threading.Event())
    assert r2.text


def test_wrong_model_name(server):
    e = OpenAIEngine(server.url, "no-such-model")
    with pytest.raises(EngineError) as ei:
        e.load()
    assert "'no-such-model'" in ei.value.message and f"'{ALIAS}'" in ei.value.message


def test_unreachable_port():
    e = OpenAIEngine(f"http://127.0.0.1:{free_port()}/v1", timeout=3)
    with pytest.raises(EngineError, match="connection was refused"):
        e.load()


def test_chat_session_end_to_end(engine, store, settings):
    from waluigi_desk.core.chat import ChatSession

    settings.override("max_tokens", 16)
    session = ChatSession(store, engine, settings)
    cid = session.new_conversation()
    turn = session.send(cid, "Say hi", lambda p: None)
    assert turn.error is None
    reply = store.get_message(turn.reply_message_id)
    assert reply.status == "complete" and reply.content == turn.text and reply.content
    assert reply.meta["engine"] == "openai" and reply.meta["model"] == ALIAS


def test_server_killed_mid_stream_keeps_the_partial_reply(default_model_path, tmp_path, store, settings):
    from waluigi_desk.core.chat import ChatSession

    srv = Server(default_model_path, tmp_path / "server2.log")
    try:
        e = OpenAIEngine(srv.url, timeout=30)
        e.load()
        settings.override("max_tokens", 1500)
        session = ChatSession(store, e, settings)
        cid = session.new_conversation()
        pieces: list[str] = []

        def on_text(p):
            pieces.append(p)
            if len(pieces) == 4:
                srv.proc.kill()

        turn = session.send(cid, "Write a very long story about a castle.", on_text)
    finally:
        srv.stop()
    assert turn.error and "lost in the middle of the reply" in turn.error
    reply = store.get_message(turn.reply_message_id)
    assert reply.status == "interrupted"
    assert reply.content == "".join(pieces) and len(pieces) >= 4
    assert store.messages(cid)[0].content == "Write a very long story about a castle."


def test_cli_ask_against_the_server(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WALUIGI_DESK_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "waluigi_desk", "ask", "--home", str(tmp_path / "h"), "--engine", "openai",
         "--base-url", server.url, "--json", "--max-tokens", "12", "Say hi"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["engine"] == "openai" and out["model"] == ALIAS and out["reply"]
    assert out["device"] == f"Remote: {server.url} (model {ALIAS})" and out["gpu_offload"] is False
    bad = subprocess.run(
        [sys.executable, "-m", "waluigi_desk", "ask", "--home", str(tmp_path / "h"), "--engine", "openai",
         "--base-url", server.url, "--remote-model", "nope", "Say hi"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert bad.returncode == 1 and "no model 'nope'" in bad.stderr and ALIAS in bad.stderr
