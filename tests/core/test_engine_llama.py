"""The local engine through the real llama-cpp-python and the default model (issue 2)."""

from __future__ import annotations

import threading

import pytest

from waluigi_desk.core.chat import ChatSession
from waluigi_desk.core.engine import Engine, GenParams
from waluigi_desk.core.engine.llama import LlamaEngine, device_text, resolve_gpu_layers

PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "Tell me a long story about a dragon and a knight."}]


def gen(engine, messages=PROMPT, *, seed=42, temperature=0.8, max_tokens=40, cancel=None, on_text=None):
    pieces: list[str] = []

    def cb(p: str) -> None:
        pieces.append(p)
        if on_text:
            on_text(p)

    r = engine.generate(messages, GenParams(temperature=temperature, top_p=0.95, max_tokens=max_tokens, seed=seed),
                        cb, cancel or threading.Event())
    return r, pieces


def test_engine_protocol_and_info(llama_engine):
    assert isinstance(llama_engine, Engine)
    info = llama_engine.info
    assert info.kind == "llama" and info.n_ctx == 2048
    assert info.model_path.endswith(".gguf")
    assert info.extra["architecture"] == "llama" and info.extra["n_threads"] >= 1
    # the app says plainly where it runs
    assert info.device_text == device_text(info.gpu_layers, info.gpu_offload or info.gpu_layers != 0)
    if not info.gpu_offload:
        assert info.device_text.startswith("CPU")


def test_gpu_layers_resolution():
    assert resolve_gpu_layers("auto", True) == -1
    assert resolve_gpu_layers("auto", False) == 0
    assert resolve_gpu_layers(10, True) == 10
    assert resolve_gpu_layers(10, False) == 0
    assert "no GPU support" in device_text(0, False)
    assert device_text(-1, True).startswith("GPU")


def test_n_ctx_clamped_to_trained_context(default_model_path):
    e = LlamaEngine(str(default_model_path), n_ctx=100_000)  # not loaded: the header is enough
    assert e.info.n_ctx == 8192


def test_stream_with_fixed_seed_is_reproducible(llama_engine):
    r1, p1 = gen(llama_engine, seed=1234)
    r2, p2 = gen(llama_engine, seed=1234)
    assert r1.text and r1.text == r2.text
    assert "".join(p1) == r1.text and len(p1) > 5  # streamed piece by piece
    assert r1.finish_reason in ("stop", "length") and r1.completion_tokens >= len(p1) - 1
    assert r1.prompt_tokens == llama_engine.count_prompt_tokens(PROMPT)
    assert r1.ttft_s > 0 and r1.total_s >= r1.ttft_s
    r3, _ = gen(llama_engine, seed=99)
    assert r3.text != r1.text  # a different seed samples differently


def test_greedy_is_deterministic_and_max_tokens_respected(llama_engine):
    r1, _ = gen(llama_engine, temperature=0.0, max_tokens=7, seed=1)
    r2, _ = gen(llama_engine, temperature=0.0, max_tokens=7, seed=2)
    assert r1.text == r2.text
    assert r1.completion_tokens == 7 and r1.finish_reason == "length"


def test_cancel_stops_within_one_token(llama_engine):
    cancel = threading.Event()
    after: list[str] = []
    seen: list[str] = []

    def on_text(p):
        if cancel.is_set():
            after.append(p)
        seen.append(p)
        if len(seen) == 5:
            cancel.set()

    r, pieces = gen(llama_engine, max_tokens=300, cancel=cancel, on_text=on_text)
    assert r.finish_reason == "cancelled"
    # the flag is checked per token: no more than one (partial UTF-8 flush) piece after it
    assert len(after) <= 1
    assert r.completion_tokens <= 6
    assert r.text == "".join(pieces)


def test_cancel_before_start_evaluates_nothing_long(llama_engine):
    cancel = threading.Event()
    cancel.set()
    long_prompt = [{"role": "user", "content": "word " * 1200}]
    r, pieces = gen(llama_engine, long_prompt, cancel=cancel)
    assert r.finish_reason == "cancelled" and r.completion_tokens == 0 and pieces == []
    # the prompt is fed in slices, so a Stop during a long prompt is honoured early
    assert r.prompt_tokens_evaluated < r.prompt_tokens


def test_count_tokens(llama_engine):
    assert llama_engine.count_tokens("") == 0
    n = llama_engine.count_tokens("Hello world, this is a test.")
    assert 4 <= n <= 12
    assert llama_engine.count_prompt_tokens(PROMPT) > llama_engine.count_tokens(PROMPT[1]["content"])


def test_unicode_and_nul_in_prompt(llama_engine):
    msgs = [{"role": "user", "content": "Zeichen: \x00 ünïcödé 🐉 \ud7ff 中文"}]
    r, _ = gen(llama_engine, msgs, max_tokens=5)
    assert r.completion_tokens >= 1


def test_cancel_mid_reply_saved_as_interrupted(store, settings, llama_engine):
    settings.override("max_tokens", 400)
    settings.override("seed", 7)
    session = ChatSession(store, llama_engine, settings, flush_every=0.0)
    cid = session.new_conversation(system_prompt="You are a storyteller.")
    cancel = threading.Event()
    state = {"n": 0, "reply_id": None, "flushed": []}

    def on_started(reply_id, conversation_id, plan):
        state["reply_id"] = reply_id
        row = store.get_message(reply_id)
        assert row.status == "interrupted" and row.content == ""
        # the user's message was committed before generation started
        assert [m.role for m in store.messages(conversation_id)] == ["user", "assistant"]

    def on_text(p):
        state["n"] += 1
        if state["n"] == 10:
            state["flushed"].append(store.get_message(state["reply_id"]).content)
        if state["n"] == 20:
            cancel.set()

    turn = session.send(cid, "Tell me a very long story about a lighthouse keeper.", on_text, cancel, on_started)
    assert turn.result.finish_reason == "cancelled"
    msgs = store.messages(cid)
    assert [m.role for m in msgs] == ["user", "assistant"]
    reply = msgs[1]
    assert reply.status == "interrupted"
    assert reply.content == turn.text and len(reply.content) > 10
    assert reply.meta["finish_reason"] == "cancelled"
    # partial text was flushed while it streamed, not only at the end
    assert state["flushed"][0] and reply.content.startswith(state["flushed"][0])


def test_six_turn_conversation_reuses_prefix(store, settings, llama_engine):
    settings.override("max_tokens", 24)
    settings.override("temperature", 0.0)
    settings.override("seed", 0)
    session = ChatSession(store, llama_engine, settings)
    cid = session.new_conversation(system_prompt="You are a helpful assistant. Answer briefly.")
    questions = ["What is the capital of France?", "And of Italy?", "Name a river there.",
                 "How long is it?", "Which sea does it reach?", "Summarise our chat."]
    turns = [session.send(cid, q, lambda p: None) for q in questions]
    assert all(t.error is None for t in turns)
    last = turns[-1].result
    assert last.prompt_tokens > 150
    # only the new user message (and the template's few tokens around it) is evaluated
    assert last.prompt_tokens_evaluated < last.prompt_tokens / 4, (last.prompt_tokens_evaluated, last.prompt_tokens)
    new_msg_tokens = llama_engine.count_tokens(questions[-1])
    assert last.prompt_tokens_evaluated <= new_msg_tokens + 30
    stored = store.messages(cid)
    assert len(stored) == 12 and all(m.status == "complete" for m in stored)
    assert stored[-1].meta["prompt_tokens_evaluated"] == last.prompt_tokens_evaluated


def test_engine_without_load_gives_clear_error(default_model_path):
    from waluigi_desk.errors import EngineError

    e = LlamaEngine(str(default_model_path))
    with pytest.raises(EngineError, match="not loaded"):
        e.count_tokens("x")
    with pytest.raises(EngineError, match="not loaded"):
        e.format_prompt(PROMPT)
