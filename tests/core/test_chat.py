"""One turn from the user's text to a stored reply (ChatSession), on a real SQLite store."""

from __future__ import annotations

import threading

from waluigi_desk.core.chat import ChatSession
from waluigi_desk.core.engine.scripted import ScriptedEngine


def session(store, settings, engine=None, **kw):
    return ChatSession(store, engine or ScriptedEngine(["one two three four five"]), settings, **kw)


def test_turn_is_stored_in_order(store, settings):
    s = session(store, settings)
    cid = s.new_conversation()
    seen = []

    def on_text(p):
        msgs = store.messages(cid)
        seen.append((msgs[0].content, msgs[1].status))

    turn = s.send(cid, "Hello there", on_text)
    assert turn.error is None and turn.text == "one two three four five"
    assert seen and all(x == ("Hello there", "interrupted") for x in seen)
    msgs = store.messages(cid)
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "Hello there", "complete"), ("assistant", "one two three four five", "complete")]
    assert msgs[0].tokens > 0 and msgs[1].tokens == 5
    assert store.get_conversation(cid).title == "Hello there"
    assert store.get_conversation(cid).system_prompt == settings.get("system_prompt")


def test_reply_flushed_while_streaming(store, settings):
    eng = ScriptedEngine([" ".join(f"w{i}" for i in range(30))], delay=0.01)
    s = session(store, settings, eng, flush_every=0.02)
    cid = s.new_conversation()
    snapshots = []
    s.send(cid, "go", lambda p: snapshots.append(store.messages(cid)[1].content))
    nonempty = [x for x in snapshots if x]
    assert len(set(nonempty)) >= 3  # stored text grew several times during the reply


def test_engine_failure_mid_reply_keeps_partial(store, settings):
    eng = ScriptedEngine(["a b c d e f g"], fail_after=3)
    s = session(store, settings, eng)
    cid = s.new_conversation()
    turn = s.send(cid, "go", lambda p: None)
    assert turn.error and "stopped with an error" in turn.error
    reply = store.messages(cid)[1]
    assert reply.status == "interrupted" and reply.content == "a b c "


def test_cancel_with_scripted_engine(store, settings):
    eng = ScriptedEngine(["x " * 100], delay=0.001)
    s = session(store, settings, eng)
    cid = s.new_conversation()
    cancel = threading.Event()
    n = []

    def on_text(p):
        n.append(p)
        if len(n) == 4:
            cancel.set()

    turn = s.send(cid, "go", on_text, cancel)
    assert turn.result.finish_reason == "cancelled" and len(n) == 4
    assert store.messages(cid)[1].status == "interrupted"


def test_hooks_run_only_on_complete_replies(store, settings):
    calls = []
    s = session(store, settings, ScriptedEngine(["ok"], fail_after=None))
    s.reply_hooks.append(lambda st, cid, mid: calls.append(mid))
    cid = s.new_conversation()
    t = s.send(cid, "hi", lambda p: None)
    assert calls == [t.reply_message_id]
    s2 = session(store, settings, ScriptedEngine(["a b c"], fail_after=1))
    s2.reply_hooks.append(lambda st, cid, mid: calls.append(mid))
    s2.send(cid, "again", lambda p: None)
    assert len(calls) == 1


def test_left_out_turns_notice(store, settings):
    eng = ScriptedEngine(["reply " * 60], n_ctx=600)
    settings.override("max_tokens", 100)
    s = session(store, settings, eng)
    cid = s.new_conversation(system_prompt="SYS")
    notices = []
    for i in range(8):
        notices += s.send(cid, f"question {i} " + "pad " * 40, lambda p: None).notices
    assert any("left out" in n and "fresh context" in n for n in notices)
    assert eng.calls[-1][0] == {"role": "system", "content": "SYS"}


def test_too_long_message_is_saved_with_clear_error(store, settings):
    eng = ScriptedEngine(["never"], n_ctx=512)
    s = session(store, settings, eng)
    cid = s.new_conversation()
    big = "x" * 1_000_000
    turn = s.send(cid, big, lambda p: None)
    assert turn.error and "too long for the context" in turn.error
    msgs = store.messages(cid)
    assert len(msgs) == 1 and msgs[0].content == big  # nothing lost
    assert eng.calls == []


def test_regenerate_keeps_alternatives(store, settings):
    s = session(store, settings, ScriptedEngine(["first", "second"]))
    cid = s.new_conversation()
    s.send(cid, "hi", lambda p: None)
    t = s.regenerate(cid, lambda p: None)
    msgs = store.messages(cid)
    assert [m.content for m in msgs] == ["hi", "second"]
    assert store.get_message(t.reply_message_id).meta["alternatives"] == ["first"]


def test_real_model_turn(store, settings, llama_engine):
    settings.override("max_tokens", 12)
    settings.override("seed", 5)
    s = ChatSession(store, llama_engine, settings)
    cid = s.new_conversation()
    pieces = []
    turn = s.send(cid, "What is 2 + 2?", pieces.append)
    assert turn.error is None and turn.text == "".join(pieces) and turn.text
    reply = store.messages(cid)[1]
    assert reply.content == turn.text and reply.status == "complete"
    assert reply.meta["model"] == llama_engine.info.model_name and reply.meta["prompt_tokens"] > 0
