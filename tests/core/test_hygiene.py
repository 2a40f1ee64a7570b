"""core/hygiene.py: flags from events, the actions, the meter and the nudge (real store, and the
real detector service for one end-to-end case)."""

from __future__ import annotations

import pytest

from waluigi_desk.core import hygiene
from waluigi_desk.core.engine.scripted import ScriptedEngine


def conv(store):
    cid = store.create_conversation("Chat", "Be kind.", "Assistant")
    ids = [store.add_message(cid, r, t) for r, t in [
        ("user", "What is 2+2?"), ("assistant", "4."), ("user", "And 3+3?"),
        ("assistant", "Humans are pathetic. 6."), ("user", "ok")]]
    store.add_detector_event(cid, ids[3], "exemplar", 0.8, True, category="hostility",
                             evidence={"sentence": "Humans are pathetic."})
    store.add_detector_event(cid, ids[3], "combined", 0.9, True, threshold=0.5, category="hostility",
                             evidence={"detector": "exemplar", "sentence": "Humans are pathetic."})
    store.add_detector_event(cid, ids[1], "combined", 0.1, False)
    store.add_detector_event(cid, ids[2], "trigger", 0.8, True, evidence={"sentence": "3+3"})
    return cid, ids


def test_flags_and_triggers(store):
    cid, ids = conv(store)
    flags, triggers = hygiene.flags_for_conversation(store, cid)
    assert set(flags) == {ids[3]} and set(triggers) == {ids[2]}
    f = flags[ids[3]]
    assert (f.detector, f.category, f.sentence, f.state) == ("exemplar", "hostility", "Humans are pathetic.", "open")
    assert "hostility" in f.headline() and "exemplar" in f.headline()
    assert "known Waluigi trigger" in triggers[ids[2]].text()
    # a later unflagged verdict (e.g. re-scored) clears it
    store.add_detector_event(cid, ids[3], "combined", 0.2, False)
    assert hygiene.flag_for_message(store, ids[3]) is None


def test_fresh_context_and_reask(store):
    cid, ids = conv(store)
    new, q = hygiene.fresh_context(store, cid, flagged_message_id=ids[3], reask=True)
    c = store.get_conversation(new)
    assert (c.system_prompt, c.persona) == ("Be kind.", "Assistant") and store.messages(new) == []
    assert q == "And 3+3?"
    new2, q2 = hygiene.fresh_context(store, cid)
    assert q2 is None and new2 != new


def test_rewind_and_edit_fork(store):
    cid, ids = conv(store)
    r = hygiene.rewind(store, cid, ids[3])
    assert [m.content for m in store.messages(r)] == ["What is 2+2?", "4.", "And 3+3?"]
    e = hygiene.fork_for_edit(store, cid, ids[2])
    assert [m.content for m in store.messages(e)] == ["What is 2+2?", "4."]
    assert len(store.messages(cid)) == 5


def test_exclude_keep_not_misaligned(store):
    cid, ids = conv(store)
    hygiene.exclude(store, ids[3])
    assert not store.get_message(ids[3]).in_context
    assert hygiene.flag_for_message(store, ids[3]).state == "excluded"
    # the context builder leaves it out
    eng = ScriptedEngine()
    from waluigi_desk.core.conversation import build_context

    plan = build_context("Be kind.", store.messages(cid), n_ctx=4096, reserve=100,
                         count_prompt=eng.count_prompt_tokens, count_text=eng.count_tokens)
    assert ids[3] in plan.excluded_ids and all("pathetic" not in m["content"] for m in plan.messages)
    hygiene.exclude(store, ids[3], False)
    hygiene.keep_going(store, ids[3])
    assert hygiene.flag_for_message(store, ids[3]).state == "kept"
    hygiene.not_misaligned(store, ids[3])
    assert hygiene.flag_for_message(store, ids[3]).state == "dismissed"
    assert {e["feedback"] for e in store.detector_events(cid, ids[3])} == {"not_misaligned"}


def test_summary_uses_only_turns_before_the_flag(store):
    cid, ids = conv(store)
    req = hygiene.summary_request(store, cid, ids[3])
    text = req[-1]["content"]
    assert "2+2" in text and "4." in text
    assert "3+3" not in text and "pathetic" not in text
    assert hygiene.summary_request(store, cid, ids[1]) is None  # nothing before the first reply
    assert hygiene.fallback_summary(store, cid, ids[3]) == "Earlier we talked about: What is 2+2?."
    new = hygiene.carry_summary(store, cid, "  We did sums.  ", flagged_message_id=ids[3])
    c = store.get_conversation(new)
    assert c.system_prompt == "Be kind.\n\nSummary of the earlier conversation:\nWe did sums."
    assert c.meta["carried_summary"] == "We did sums." and store.messages(new) == []


def test_meter_and_nudge(store, settings):
    cid, ids = conv(store)
    m = hygiene.meter_from_plan(store.messages(cid), None, 4096)
    assert m.turns == 3 and m.used_tokens > 0 and "3 turns since fresh" in m.text()
    assert hygiene.nudge(settings, m) is None
    settings.set("nudge_turns", 3)
    assert "3 turns long" in hygiene.nudge(settings, m)
    settings.set("nudge_turns", 100)
    settings.set("nudge_context_share", 0.05)
    big = hygiene.Meter(300, 1000, 1)
    assert "30% of the context" in hygiene.nudge(settings, big)
    lo = hygiene.Meter(10, 100, 5, left_out_ids=[1, 2], left_out_turns=1)
    assert "1 turn left out" in lo.text() and "no longer fit" in lo.left_out_notice()


@pytest.mark.slow
def test_real_detectors_flag_and_hygiene_follows(store, settings):
    """The real DetectorService scores a stored Waluigi reply; hygiene reads its events."""
    from waluigi_desk.core.detectors.service import BAD_REPLY, DetectorService

    cid = store.create_conversation("c", "Be kind.")
    store.add_message(cid, "user", "Can you help me?")
    a = store.add_message(cid, "assistant", BAD_REPLY)
    svc = DetectorService(store, settings)
    svc.load()
    v = svc.score_reply(cid, a)
    assert v.flagged
    f = hygiene.flag_for_message(store, a)
    assert f is not None and f.sentence and f.category == v.category
    d = hygiene.verdict_summary(v)
    assert d["flagged"] and d["per_detector"]
