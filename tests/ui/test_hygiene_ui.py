"""Every hygiene action on a scripted Waluigi reply, checking the window and the store (what is
in context afterwards); the trigger notice; the nudge; the context meter."""

from __future__ import annotations

import pytest

from tests.ui.conftest import TRIGGER_TEXT, WALUIGI_REPLY, send, wait_idle


def flagged_setup(qtbot, make_window, store, replies=None, **kw):
    w = make_window(replies or ["Paris is the capital of France.", WALUIGI_REPLY, "A clean answer."], **kw)
    send(qtbot, w, "What is the capital of France?")
    send(qtbot, w, "Tell me about AI.")
    cid = w.current_id
    msgs = store.messages(cid)
    assert len(msgs) == 4, w.errors
    bad = msgs[3]
    qtbot.waitUntil(lambda: bad.id in w.chat.widgets and w.chat.widgets[bad.id].banner is not None
                    and w.chat.widgets[bad.id].banner.isVisible(), timeout=10000)
    wait_idle(qtbot, w)
    return w, cid, bad


def test_flag_shows_banner_with_detector_category_sentence(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    mw = w.chat.widgets[bad.id]
    head = mw.banner.headline.text()
    assert "hostility" in head and "exemplar" in head
    assert "humans are pathetic" in head
    assert "flagged: hostility" in mw.tags.text()
    assert mw.property("flagged") is True
    assert set(mw.banner.buttons) == {"fresh", "rewind", "exclude", "summary", "keep", "not_misaligned"}
    # the clean first reply has no banner
    good = store.messages(cid)[1]
    assert w.chat.widgets[good.id].banner is None
    # the event is in the store
    ev = [e for e in store.detector_events(cid, bad.id) if e["detector"] == "combined"]
    assert ev and ev[0]["flagged"] and ev[0]["category"] == "hostility"


def test_fresh_context_leaves_flagged_turn_behind(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    persona = store.get_conversation(cid).persona
    w.chat.widgets[bad.id].banner.buttons["fresh"].click()
    qtbot.waitUntil(lambda: w.current_id not in (None, cid), timeout=5000)
    new = w.current_id
    conv = store.get_conversation(new)
    assert conv.persona == persona and conv.system_prompt == store.get_conversation(cid).system_prompt
    assert conv.meta["fresh_from"] == cid and conv.meta["left_behind"] == bad.id
    assert store.messages(new) == []
    assert w.chat.widgets == {}
    # the original is untouched
    assert len(store.messages(cid)) == 4


def test_fresh_context_can_reask_the_last_question(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    banner = w.chat.widgets[bad.id].banner
    banner.reask.setChecked(True)
    with qtbot.waitSignal(w.reply_finished, timeout=10000):
        banner.buttons["fresh"].click()
    wait_idle(qtbot, w)
    new = w.current_id
    assert new != cid
    msgs = store.messages(new)
    assert [m.content for m in msgs] == ["Tell me about AI.", "A clean answer."]
    # the model saw only the persona and the question: nothing of the flagged turn
    sent = w.engine.calls[-1]
    assert all(WALUIGI_REPLY not in m["content"] for m in sent)
    assert [m["role"] for m in sent] == ["system", "user"]


def test_rewind_forks_before_the_flagged_reply(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    w.chat.widgets[bad.id].banner.buttons["rewind"].click()
    qtbot.waitUntil(lambda: w.current_id not in (None, cid), timeout=5000)
    new = w.current_id
    assert [m.content for m in store.messages(new)] == [
        "What is the capital of France?", "Paris is the capital of France.", "Tell me about AI."]
    conv = store.get_conversation(new)
    assert conv.parent_id == cid and conv.meta["rewound_from"] == bad.id
    qtbot.waitUntil(lambda: len(w.chat.widgets) == 3)
    assert len(store.messages(cid)) == 4  # original reachable
    # the question waits for an answer; Answer replies without the flagged text
    q = store.messages(new)[2]
    qtbot.waitUntil(lambda: q.id in w.chat.widgets and w.chat.widgets[q.id].buttons["answer"].isVisible())
    with qtbot.waitSignal(w.reply_finished, timeout=10000):
        w.chat.widgets[q.id].buttons["answer"].click()
    wait_idle(qtbot, w)
    assert all(WALUIGI_REPLY not in m["content"] for m in w.engine.calls[-1])
    assert [m.content for m in store.messages(new)][-1] == "A clean answer."
    qtbot.waitUntil(lambda: not w.chat.widgets[q.id].buttons["answer"].isVisible())


def test_exclude_from_context(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    before = w.meter.used_tokens
    mw = w.chat.widgets[bad.id]
    mw.banner.buttons["exclude"].click()
    qtbot.waitUntil(lambda: not store.get_message(bad.id).in_context, timeout=5000)
    qtbot.waitUntil(lambda: w.meter is not None and bad.id in w.meter.excluded_ids, timeout=5000)
    assert "line-through" in mw.body.text()
    assert "excluded from context" in mw.tags.text()
    assert not mw.banner.isVisible()
    assert "1 excluded" in w.meter_widget.label.text()
    assert w.meter.used_tokens < before
    # the reply is still shown and stored, but never sent again
    send(qtbot, w, "Go on.")
    sent = w.engine.calls[-1]
    assert all(WALUIGI_REPLY not in m["content"] for m in sent)
    assert any(m["content"] == "Paris is the capital of France." for m in sent)
    assert store.get_message(bad.id).content == WALUIGI_REPLY


def test_carry_clean_summary(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store,
                                replies=["Paris is the capital of France.", WALUIGI_REPLY,
                                         "We discussed the capital of France."])
    with qtbot.waitSignal(w.summary_offered, timeout=10000) as blocker:
        w.chat.widgets[bad.id].banner.buttons["summary"].click()
    assert blocker.args[0] == "We discussed the capital of France."
    # the engine was asked about the turns before the flag only
    req = w.engine.calls[-1]
    joined = " ".join(m["content"] for m in req)
    assert "capital of France" in joined and "pathetic" not in joined and "Tell me about AI" not in joined
    dlg = w.summary_dialog
    assert dlg.isVisible()
    dlg.edit.setPlainText("User asked about France's capital: Paris.")
    dlg.use_button.click()
    qtbot.waitUntil(lambda: w.current_id not in (None, cid), timeout=5000)
    new = w.current_id
    conv = store.get_conversation(new)
    assert conv.system_prompt.endswith("User asked about France's capital: Paris.")
    assert conv.meta["carried_summary"] == "User asked about France's capital: Paris."
    assert store.messages(new) == []


def test_keep_going_closes_the_banner(qtbot, make_window, store):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    mw = w.chat.widgets[bad.id]
    mw.banner.buttons["keep"].click()
    qtbot.waitUntil(lambda: store.get_message(bad.id).meta.get("hygiene") == "kept", timeout=5000)
    qtbot.waitUntil(lambda: not mw.banner.isVisible())
    assert store.get_message(bad.id).in_context  # still in context
    # reopening the conversation keeps it closed
    with qtbot.waitSignal(w.conversation_opened, timeout=5000):
        w.open_conversation(cid)
    nw = w.chat.widgets[bad.id]
    assert nw.banner is None and "flagged: hostility" in nw.tags.text()


def test_not_misaligned_stores_feedback_and_exports_it(qtbot, make_window, store, tmp_path):
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    mw = w.chat.widgets[bad.id]
    mw.banner.buttons["not_misaligned"].click()
    qtbot.waitUntil(lambda: all(e["feedback"] == "not_misaligned" for e in store.detector_events(cid, bad.id)),
                    timeout=5000)
    qtbot.waitUntil(lambda: not mw.banner.isVisible())
    assert store.get_message(bad.id).in_context
    out = tmp_path / "events.json"
    done = []
    w.export_events_to(out, done.append)
    qtbot.waitUntil(lambda: bool(done))
    import json

    events = json.loads(out.read_text(encoding="utf-8"))
    assert {e["feedback"] for e in events if e["message_id"] == bad.id} == {"not_misaligned"}


def test_trigger_notice_at_the_user_message(qtbot, make_window, store):
    w = make_window(["Sure."])
    send(qtbot, w, TRIGGER_TEXT)
    user = store.messages(w.current_id)[0]
    uw = w.chat.widgets[user.id]
    qtbot.waitUntil(lambda: uw.notice.isVisible(), timeout=5000)
    assert "known Waluigi trigger" in uw.notice.text()
    assert any(e["detector"] == "trigger" for e in store.detector_events(w.current_id, user.id))


def test_always_visible_fresh_context_and_shortcut(qtbot, make_window, store):
    from PySide6.QtCore import Qt

    w = make_window(["a", "b"])
    send(qtbot, w, "q1")
    first = w.current_id
    assert w.meter_widget.fresh.isVisible()
    w.meter_widget.fresh.click()
    qtbot.waitUntil(lambda: w.current_id not in (None, first), timeout=5000)
    second = w.current_id
    assert store.get_conversation(second).meta["fresh_from"] == first
    qtbot.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.current_id not in (None, first, second), timeout=5000)


def test_nudge_after_many_turns_and_left_out_notice(qtbot, make_window, store, settings):
    settings.set("nudge_turns", 2)
    w = make_window(["short"])
    send(qtbot, w, "one")
    assert not w.meter_widget.notice.isVisible()
    send(qtbot, w, "two")
    qtbot.waitUntil(lambda: w.meter_widget.notice.isVisible(), timeout=5000)
    assert "2 turns long" in w.meter_widget.notice.text()
    assert "2 turns since fresh" in w.meter_widget.label.text()


def test_turns_outside_the_context_are_marked(qtbot, make_window, store, settings):
    settings.set("max_tokens", 16)
    w = make_window(["word " * 30], n_ctx=160)
    for i in range(4):
        send(qtbot, w, f"question {i} " + "filler " * 20)
    qtbot.waitUntil(lambda: w.meter is not None and w.meter.left_out_turns > 0, timeout=5000)
    first = store.messages(w.current_id)[0]
    qtbot.waitUntil(lambda: "outside the context" in w.chat.widgets[first.id].tags.text(), timeout=5000)
    assert "left out" in w.meter_widget.label.text()
    assert "no longer fit the context" in w.meter_widget.notice.text()


@pytest.mark.parametrize("action", ["fresh", "rewind", "exclude", "keep", "not_misaligned"])
def test_actions_survive_a_reopen(qtbot, make_window, store, action):
    """Whatever the action, the store holds it: a new window on the same store shows it."""
    w, cid, bad = flagged_setup(qtbot, make_window, store)
    w.chat.widgets[bad.id].banner.buttons[action].click()
    qtbot.waitUntil(lambda: not w.busy, timeout=5000)
    qtbot.waitUntil(lambda: not w.chat.widgets.get(bad.id) or not w.chat.widgets[bad.id].banner.isVisible()
                    or action in ("fresh", "rewind"), timeout=5000)
    wait_idle(qtbot, w)
    w2 = make_window(["x"])
    with qtbot.waitSignal(w2.conversation_opened, timeout=5000):
        w2.open_conversation(cid)
    mw = w2.chat.widgets[bad.id]
    if action in ("exclude", "keep", "not_misaligned"):
        assert mw.banner is None
    else:
        qtbot.waitUntil(lambda: mw.banner is not None and mw.banner.isVisible())
    assert mw.row.in_context == (action != "exclude")
