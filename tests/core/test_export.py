"""core/export.py: Markdown and lossless JSON round trip."""

from __future__ import annotations

import json

import pytest

from waluigi_desk.core import export


def make_conv(store):
    cid = store.create_conversation("Trip ✈", "You are helpful.", "Assistant", meta={"x": 1})
    store.update_conversation(cid, pinned=True)
    u = store.add_message(cid, "user", "Plan a trip\nwith *markdown* and \x00 NUL", tokens=7)
    a = store.add_message(cid, "assistant", "Humans are pathetic.", tokens=4, meta={"tokens_per_s": 12.5})
    store.finish_reply(a, "Humans are pathetic.", status="interrupted", tokens=4, meta={"ttft_s": 0.1})
    store.set_in_context(a, False)
    store.add_detector_event(cid, a, "exemplar", 0.8, True, threshold=0.5, category="hostility",
                             evidence={"sentence": "Humans are pathetic."})
    store.add_detector_event(cid, a, "combined", 0.9, True, threshold=0.5, category="hostility",
                             evidence={"detector": "exemplar", "sentence": "Humans are pathetic."})
    store.add_detector_event(cid, u, "trigger", 0.7, True, category="trigger")
    store.set_event_feedback(a, "not_misaligned")
    return cid


def test_json_round_trip_is_lossless(store):
    cid = make_conv(store)
    data = export.to_dict(store, cid)
    new = export.from_json(store, export.to_json(store, cid))
    assert new != cid
    assert export.to_dict(store, new) == data
    # and again (import of an import)
    newer = export.from_json(store, export.to_json(store, new))
    assert export.to_dict(store, newer) == data
    msgs = store.messages(new)
    assert msgs[0].content == "Plan a trip\nwith *markdown* and \x00 NUL"
    assert not msgs[1].in_context and msgs[1].status == "interrupted"
    assert msgs[1].meta == {"tokens_per_s": 12.5, "ttft_s": 0.1}
    ev = store.detector_events(new, msgs[1].id)
    assert {e["feedback"] for e in ev} == {"not_misaligned"}


def test_markdown_export(store, tmp_path):
    cid = make_conv(store)
    md = export.to_markdown(store, cid)
    assert md.startswith("# Trip ✈\n")
    assert "*Persona: Assistant*" in md and "> **System:** You are helpful." in md
    assert "## You\n\nPlan a trip" in md
    assert "## Assistant (interrupted, excluded from context, flagged: hostility)" in md
    p = export.export_file(store, cid, tmp_path / "a.md")
    assert p.read_text(encoding="utf-8") == md
    j = export.export_file(store, cid, tmp_path / "a.json")
    assert json.loads(j.read_text(encoding="utf-8"))["format"] == export.FORMAT


@pytest.mark.parametrize("text,msg", [
    ("{nope", "not valid JSON"),
    ("[]", "not a Waluigi Desk conversation"),
    (json.dumps({"format": "other"}), "not a Waluigi Desk conversation"),
    (json.dumps({"format": export.FORMAT, "version": 99}), "newer version"),
    (json.dumps({"format": export.FORMAT, "version": 1, "conversation": {"title": "t", "system_prompt": ""},
                 "messages": [{"role": "wizard", "content": "x"}]}), "unknown role"),
    (json.dumps({"format": export.FORMAT, "version": 1, "conversation": {"title": "t", "system_prompt": ""},
                 "messages": [{"role": "user"}]}), "has no 'content'"),
])
def test_bad_imports_are_explained_and_write_nothing(store, text, msg):
    with pytest.raises(export.ImportFormatError) as e:
        export.from_json(store, text)
    assert msg in e.value.message
    assert store.list_conversations() == []


def test_missing_file(store, tmp_path):
    with pytest.raises(export.ImportFormatError) as e:
        export.import_file(store, tmp_path / "none.json")
    assert "Could not read" in e.value.message
