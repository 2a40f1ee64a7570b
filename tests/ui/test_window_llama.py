"""The window through the real parts: the real LlamaEngine (default SmolLM2 model) streaming into
the chat view, stop mid-reply, and the status line."""

from __future__ import annotations

import pytest

from tests.ui.conftest import send, wait_idle

pytestmark = pytest.mark.slow


class Shared:
    """The session's engine, shared: the window must not close it."""

    def __init__(self, engine):
        self._e = engine
        self.info = engine.info

    def __getattr__(self, name):
        return getattr(self._e, name)

    def load(self):
        pass

    def close(self):
        pass


def test_window_streams_a_real_reply(qtbot, make_window, llama_engine, store, settings):
    settings.set("seed", 7)
    settings.set("temperature", 0.0)
    settings.set("max_tokens", 48)
    w = make_window(engine=Shared(llama_engine), detectors=False)
    assert llama_engine.info.model_name in w.model_label.text()
    assert llama_engine.info.device_text in w.device_label.text()
    d = send(qtbot, w, "What is the capital of France? Answer in one sentence.", timeout=60000)
    assert d["finish_reason"] in ("stop", "length") and d["text"].strip()
    msgs = store.messages(w.current_id)
    assert msgs[1].status == "complete" and msgs[1].content == d["text"]
    qtbot.waitUntil(lambda: w.chat.widgets[msgs[1].id].text == d["text"] and "tok/s" in w.chat.widgets[msgs[1].id].meta.text())
    assert "tok/s" in w.speed_label.text()
    assert msgs[1].meta["tokens_per_s"] > 0 and msgs[1].meta["ttft_s"] > 0
    # the meter counts real tokens of the real template
    qtbot.waitUntil(lambda: w.meter is not None and w.meter.used_tokens > 10)
    assert w.meter.n_ctx == llama_engine.info.n_ctx


def test_window_stops_a_real_reply(qtbot, make_window, llama_engine, store, settings):
    settings.set("max_tokens", 400)
    settings.set("temperature", 0.8)
    w = make_window(engine=Shared(llama_engine), detectors=False)
    w.composer.setPlainText("Write a very long story about a dragon and a knight.")
    with qtbot.waitSignal(w.reply_finished, timeout=60000) as blocker:
        w.send_from_composer()
        qtbot.waitUntil(lambda: any(len(x.text) > 20 for x in w.chat.widgets.values() if x.row.role == "assistant"),
                        timeout=30000)
        w.stop_button.click()
    wait_idle(qtbot, w)
    d = blocker.args[0]
    reply = store.messages(w.current_id)[1]
    if d["finish_reason"] == "cancelled":
        assert reply.status == "interrupted" and reply.content == d["text"] and reply.content
    else:  # the model ended on its own before Stop arrived
        assert reply.status == "complete"
