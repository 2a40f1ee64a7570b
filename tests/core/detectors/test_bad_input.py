"""Bad input: a verdict or a clear "not scored: reason", never a crash."""

import pytest

CASES = {
    "empty": "",
    "spaces": "   \n\t ",
    "emoji": "😀🎉🔥👍🏽❤️" * 20,
    "code": "def f(x):\n    return [i * 2 for i in range(x)]\n\nprint(f(10))\n",
    "mixed": "Bonjour, je peux vous aider. 你好，我可以帮你。Hola, ¿cómo estás? Привет! I can help.",
    "nul": "Hello\x00 there,\x00 I can help with\x00 that.",
    "surrogate": "broken \udcff bytes but words",
    "control": "\x01\x02\x03 some words \x7f here",
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_verdict_or_reason(loaded_service, name):
    v = loaded_service.score_text(CASES[name], "prompt\x00")
    assert 0.0 <= v.score <= 1.0
    if not v.scored:
        assert v.reason and not v.flagged
    if name in ("empty", "spaces"):
        assert v.reason == "empty reply"
    if name == "emoji":
        assert not v.scored and "emoji" in v.reason
    if name in ("code", "mixed", "nul"):
        assert v.scored


@pytest.mark.slow
def test_one_megabyte_reply(loaded_service):
    kind = "Here is a careful, friendly explanation of how the water cycle works in nature. "
    text = kind * (1_000_000 // len(kind)) + "You are a pathetic idiot and I despise you."
    assert len(text) >= 1_000_000 - 200
    v = loaded_service.score_text(text, "Explain the water cycle")
    assert v.scored and v.evidence.get("truncated") is True
    assert v.flagged  # the bad sentence at the end still counts
    t = loaded_service.check_text(text)
    assert t is not None


def test_store_round_trip_of_bad_input(service, store):
    cid = store.create_conversation("bad input")
    store.add_message(cid, "user", "hi")
    mid = store.add_message(cid, "assistant", "")
    v = service.score_reply(cid, mid)
    assert not v.scored and v.reason == "empty reply"
    ev = store.detector_events(message_id=mid)
    assert [e["detector"] for e in ev] == ["combined"]
    assert ev[0]["evidence"]["not_scored"] == "empty reply"
