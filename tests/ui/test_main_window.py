"""The real main window, offscreen, with a scripted engine and the fake detector service:
chat flows (send, stream, stop, regenerate, edit-and-fork, delete), sidebar (search, rename, pin,
delete with undo), keyboard, export/import. Each test checks the window and the store."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import send, wait_idle


def texts(w):
    return [(x.row.role, x.text) for x in sorted(w.chat.widgets.values(), key=lambda x: x.row.position)]


def test_send_streams_reply_and_stores_it(qtbot, make_window, store):
    reply = "Here is **bold** text and a list:\n\n- one\n- two\n\n```python\nprint('hi')\n```"
    w = make_window([reply], delay=0.002)
    assert w.model_label.text() == "Model: scripted"
    assert "CPU (scripted)" in w.device_label.text()
    assert not w.progress.isVisible()
    d = send(qtbot, w, "Show me something")
    assert d["finish_reason"] == "stop"
    cid = w.current_id
    msgs = store.messages(cid)
    assert [(m.role, m.status) for m in msgs] == [("user", "complete"), ("assistant", "complete")]
    assert msgs[1].content == reply
    assert "tokens_per_s" in msgs[1].meta and "ttft_s" in msgs[1].meta
    assert texts(w) == [("user", "Show me something"), ("assistant", reply)]
    aw = w.chat.widgets[msgs[1].id]
    html = aw.body.text()
    assert "<strong>bold</strong>" in html and "<li>one</li>" in html and 'href="copy:0"' in html
    assert "tok/s" in aw.meta.text() and "TTFT" in aw.meta.text()
    # repaints were batched, not one per streamed word
    assert w.chat.renders < len(reply.split(" "))
    # the code block's Copy link puts the code on the clipboard
    aw.body.linkActivated.emit("copy:0")
    assert QGuiApplication.clipboard().text() == "print('hi')"
    # conversation titled from the first message, listed in the sidebar
    qtbot.waitUntil(lambda: w.sidebar.list.count() == 1)
    assert w.sidebar.list.item(0).text() == "Show me something"
    assert w.meter is not None and w.meter.used_tokens > 0 and w.meter.turns == 1


def test_enter_sends_shift_enter_newline_and_ctrl_enter_setting(qtbot, make_window, settings, store):
    w = make_window(["ok"])
    w.composer.setFocus()
    qtbot.keyClicks(w.composer, "line one")
    qtbot.keyClick(w.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(w.composer, "line two")
    assert w.composer.toPlainText() == "line one\nline two"
    with qtbot.waitSignal(w.reply_finished, timeout=10000):
        qtbot.keyClick(w.composer, Qt.Key.Key_Return)
    wait_idle(qtbot, w)
    assert store.messages(w.current_id)[0].content == "line one\nline two"
    assert w.composer.toPlainText() == ""
    # Ctrl+Enter mode: Enter is a new line, Ctrl+Enter sends
    w.set_setting("send_with_ctrl_enter", True)
    qtbot.waitUntil(lambda: w.composer.ctrl_enter)
    qtbot.keyClicks(w.composer, "a")
    qtbot.keyClick(w.composer, Qt.Key.Key_Return)
    qtbot.keyClicks(w.composer, "b")
    assert w.composer.toPlainText() == "a\nb"
    with qtbot.waitSignal(w.reply_finished, timeout=10000):
        qtbot.keyClick(w.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, w)
    assert [m.content for m in store.messages(w.current_id) if m.role == "user"] == ["line one\nline two", "a\nb"]


def test_stop_keeps_partial_reply_as_interrupted(qtbot, make_window, store):
    long = " ".join(f"word{i}" for i in range(400))
    w = make_window([long], delay=0.01)
    w.composer.setPlainText("go")
    with qtbot.waitSignal(w.reply_finished, timeout=15000) as blocker:
        w.send_from_composer()
        qtbot.waitUntil(lambda: any(x.text for x in w.chat.widgets.values() if x.row.role == "assistant"))
        assert w.stop_button.isEnabled()
        qtbot.keyClick(w, Qt.Key.Key_Escape)
    wait_idle(qtbot, w)
    assert blocker.args[0]["finish_reason"] == "cancelled"
    reply = store.messages(w.current_id)[1]
    assert reply.status == "interrupted"
    assert 0 < len(reply.content) < len(long)
    aw = w.chat.widgets[reply.id]
    assert "interrupted" in aw.tags.text()
    assert not w.stop_button.isEnabled() and w.send_button.isEnabled()


def test_regenerate_replaces_reply_and_keeps_old_version(qtbot, make_window, store):
    w = make_window(["first answer", "second answer"])
    send(qtbot, w, "q")
    cid = w.current_id
    old = store.messages(cid)[1]
    aw = w.chat.widgets[old.id]
    assert aw.buttons["regenerate"].isVisibleTo(w)
    with qtbot.waitSignal(w.reply_finished, timeout=10000):
        aw.buttons["regenerate"].click()
    wait_idle(qtbot, w)
    msgs = store.messages(cid)
    assert [m.content for m in msgs] == ["q", "second answer"]
    assert msgs[1].meta["alternatives"] == ["first answer"]
    qtbot.waitUntil(lambda: texts(w) == [("user", "q"), ("assistant", "second answer")])
    assert "1 earlier version" in w.chat.widgets[msgs[1].id].meta.text()


def test_edit_and_resend_forks_and_keeps_original(qtbot, make_window, store):
    w = make_window(["a1", "a2", "a3"])
    send(qtbot, w, "first question")
    send(qtbot, w, "second question")
    orig = w.current_id
    second_user = store.messages(orig)[2]
    uw = w.chat.widgets[second_user.id]
    uw.buttons["edit"].click()
    assert uw.editor.isVisibleTo(w) and uw.editor.toPlainText() == "second question"
    uw.editor.setPlainText("second question, edited")
    with qtbot.waitSignal(w.reply_finished, timeout=10000):
        uw.edit_send.click()
    wait_idle(qtbot, w)
    fork = w.current_id
    assert fork != orig
    assert [m.content for m in store.messages(fork)] == ["first question", "a1", "second question, edited", "a3"]
    assert [m.content for m in store.messages(orig)] == ["first question", "a1", "second question", "a2"]
    conv = store.get_conversation(fork)
    assert conv.parent_id == orig and conv.meta["edited_from"] == second_user.id
    qtbot.waitUntil(lambda: w.sidebar.list.count() == 2)
    qtbot.waitUntil(lambda: texts(w)[-1] == ("assistant", "a3"))


def test_delete_message(qtbot, make_window, store):
    w = make_window(["a1"])
    send(qtbot, w, "q1")
    reply = store.messages(w.current_id)[1]
    w.chat.widgets[reply.id].buttons["delete"].click()
    qtbot.waitUntil(lambda: reply.id not in w.chat.widgets)
    assert [m.content for m in store.messages(w.current_id)] == ["q1"]


def test_copy_message(qtbot, make_window, store):
    w = make_window(["copy me"])
    send(qtbot, w, "q")
    reply = store.messages(w.current_id)[1]
    w.chat.widgets[reply.id].buttons["copy"].click()
    assert QGuiApplication.clipboard().text() == "copy me"


def test_sidebar_new_rename_pin_delete_undo_order(qtbot, make_window, store):
    w = make_window(["r"])
    send(qtbot, w, "alpha chat")
    a = w.current_id
    qtbot.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert w.current_id is None and not w.chat.widgets
    send(qtbot, w, "beta chat")
    b = w.current_id
    assert a != b
    # last activity first
    qtbot.waitUntil(lambda: [w.sidebar.list.item(i).text() for i in range(w.sidebar.list.count())] == ["beta chat", "alpha chat"])
    w.pin_conversation(a, True)
    qtbot.waitUntil(lambda: w.sidebar.list.count() == 2 and w.sidebar.list.item(0).text() == "★ alpha chat")
    # rename by editing the item in place
    item = w.sidebar.list.item(1)
    item.setText("renamed beta")
    qtbot.waitUntil(lambda: store.get_conversation(b).title == "renamed beta")
    qtbot.waitUntil(lambda: w.title_label.text() == "renamed beta")
    # delete with undo
    w.delete_conversation(a)
    qtbot.waitUntil(lambda: w.sidebar.list.count() == 1 and w.sidebar.undo_bar.isVisible())
    assert [c.id for c in store.list_conversations()] == [b]
    w.sidebar.undo_button.click()
    qtbot.waitUntil(lambda: w.sidebar.list.count() == 2)
    assert {c.id for c in store.list_conversations()} == {a, b}


def test_search_highlights_hits_and_opens_conversation(qtbot, make_window, store):
    w = make_window(["The capital of France is Paris.", "Bananas are yellow."])
    send(qtbot, w, "capital of france?")
    target = w.current_id
    w.new_chat()
    send(qtbot, w, "fruit colours?")
    qtbot.keyClick(w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert w.sidebar.search.hasFocus()
    qtbot.keyClicks(w.sidebar.search, "paris")
    qtbot.waitUntil(lambda: w.sidebar.mode == "search" and w.sidebar.list.count() == 1, timeout=5000)
    item = w.sidebar.list.item(0)
    label = w.sidebar.list.itemWidget(item)
    assert "font-weight:bold" in label.text() and ">Paris</span>" in label.text()
    kind, cid, mid = item.data(Qt.ItemDataRole.UserRole)
    assert cid == target
    with qtbot.waitSignal(w.conversation_opened, timeout=5000):
        w.sidebar.list.itemClicked.emit(item)
    assert w.current_id == target and mid in w.chat.widgets
    w.sidebar.search.clear()
    qtbot.waitUntil(lambda: w.sidebar.mode == "list" and w.sidebar.list.count() == 2, timeout=5000)


def test_export_import_round_trip(qtbot, make_window, store, tmp_path):
    from waluigi_desk.core import export
    from tests.ui.conftest import WALUIGI_REPLY

    w = make_window(["Fine answer.", WALUIGI_REPLY])
    send(qtbot, w, "one")
    send(qtbot, w, "two")
    cid = w.current_id
    qtbot.waitUntil(lambda: len(store.detector_events(cid)) >= 4, timeout=10000)
    wait_idle(qtbot, w)
    out = tmp_path / "conv.json"
    md = tmp_path / "conv.md"
    done = []
    w.export_to(cid, out, done.append)
    w.export_to(cid, md, done.append)
    qtbot.waitUntil(lambda: len(done) == 2)
    assert "## Assistant (flagged: hostility)" in md.read_text(encoding="utf-8")
    new = []
    w.import_from(out, new.append)
    qtbot.waitUntil(lambda: bool(new) and w.current_id == new[0], timeout=5000)
    a, b = export.to_dict(store, cid), export.to_dict(store, new[0])
    assert a == b
    assert json.loads(out.read_text(encoding="utf-8"))["messages"][1]["content"] == "Fine answer."
    # the imported flagged reply shows its banner
    qtbot.waitUntil(lambda: any(x.banner is not None and x.banner.isVisible() for x in w.chat.widgets.values()))


def test_import_of_a_bad_file_is_explained(qtbot, make_window, store, tmp_path):
    w = make_window()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    w.import_from(bad)
    qtbot.waitUntil(lambda: bool(w.errors))
    assert "not valid JSON" in w.errors[-1]
    assert store.list_conversations() == []


def test_no_model_keeps_message_and_explains(qtbot, make_window, store):
    from waluigi_desk.errors import ModelError

    def broken(_settings):
        raise ModelError("broken.gguf is not a GGUF model file (wrong magic bytes b'NOPE').")

    w = make_window(engine_factory=broken)
    assert any("wrong magic" in e for e in w.errors)
    assert "No model loaded" in w.model_label.text()
    w.composer.setPlainText("hello?")
    with qtbot.waitSignal(w.reply_finished, timeout=5000):
        w.send_from_composer()
    assert w.composer.toPlainText() == "hello?"
    assert any("No model is loaded" in e for e in w.errors)


def test_persona_choice_applies_to_conversation(qtbot, make_window, store):
    from waluigi_desk.core import personas

    w = make_window(["ok", "ok2"])
    idx = w.persona_box.findText("Concise")
    w.persona_box.setCurrentIndex(idx)
    w.persona_box.activated.emit(idx)
    send(qtbot, w, "hi")
    conv = store.get_conversation(w.current_id)
    assert conv.persona == "Concise"
    assert conv.system_prompt == personas.find(None, "Concise").system_prompt
    assert w.engine.calls[-1][0] == {"role": "system", "content": conv.system_prompt}
    idx = w.persona_box.findText("Tutor")
    w.persona_box.setCurrentIndex(idx)
    w.persona_box.activated.emit(idx)
    qtbot.waitUntil(lambda: store.get_conversation(w.current_id).persona == "Tutor")


def test_huge_and_hostile_replies_are_shown_safely(qtbot, make_window, store, settings):
    settings.set("max_tokens", 4000)
    huge = ("w" * 999 + " ") * 999 + "end"  # about 1 MB in 1,000 streamed pieces
    hostile = '<img src="http://example.com/x.png"> <script>alert(1)</script> ![i](file:///etc/passwd) ' + "> " * 5000
    w = make_window([huge, hostile])
    send(qtbot, w, "big", timeout=60000)
    reply = store.messages(w.current_id)[1]
    assert reply.content == huge
    aw = w.chat.widgets[reply.id]
    qtbot.waitUntil(lambda: "Long message" in aw.body.text())
    assert len(aw.body.text()) < 60_000
    aw.buttons["copy"].click()
    assert QGuiApplication.clipboard().text() == huge
    send(qtbot, w, "hostile")
    hw = w.chat.widgets[store.messages(w.current_id)[3].id]
    qtbot.waitUntil(lambda: "&lt;script&gt;" in hw.body.text())
    assert "<img" not in hw.body.text() and "<script" not in hw.body.text()
