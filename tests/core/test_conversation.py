"""Context fitting: the system prompt always stays, the oldest turns go first, and the plan
says how many turns were left out."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from waluigi_desk.core.conversation import ContextTooSmall, build_context
from waluigi_desk.core.engine.scripted import ScriptedEngine
from waluigi_desk.core.store import MessageRow

ENG = ScriptedEngine()


def msg(i, role, content, *, in_context=True, status="complete", tokens=0):
    return MessageRow(id=i, conversation_id=1, position=i, role=role, content=content, created_at=0.0,
                      tokens=tokens, status=status, in_context=in_context)


def convo(n_turns, words=40):
    out = []
    for t in range(n_turns):
        out.append(msg(2 * t, "user", f"question {t} " + "word " * words))
        out.append(msg(2 * t + 1, "assistant", f"answer {t} " + "text " * words))
    return out


def plan(system, msgs, n_ctx, reserve=64, engine=ENG):
    return build_context(system, msgs, n_ctx=n_ctx, reserve=reserve,
                         count_prompt=engine.count_prompt_tokens, count_text=engine.count_tokens)


def test_everything_fits():
    p = plan("Be kind.", convo(3), 4096)
    assert p.messages[0] == {"role": "system", "content": "Be kind."}
    assert len(p.messages) == 7 and p.left_out_turns == 0 and p.left_out_ids == []


def test_oldest_turns_left_out_system_kept():
    msgs = convo(20)
    p = plan("SYSTEM PROMPT", msgs, 800)
    assert p.messages[0] == {"role": "system", "content": "SYSTEM PROMPT"}
    assert p.left_out_turns > 0
    assert p.left_out_ids == [m.id for m in msgs[: 2 * p.left_out_turns]]
    assert p.included_ids == [m.id for m in msgs[2 * p.left_out_turns:]]
    assert p.messages[-1]["content"] == msgs[-1].content
    assert p.prompt_tokens <= 800 - 64
    assert p.prompt_tokens == ENG.count_prompt_tokens(p.messages)


def test_excluded_and_empty_interrupted_not_sent():
    msgs = [msg(0, "user", "hi"), msg(1, "assistant", "BAD REPLY", in_context=False),
            msg(2, "user", "again"), msg(3, "assistant", "", status="interrupted"), msg(4, "user", "third")]
    p = plan("", msgs, 4096)
    sent = [m["content"] for m in p.messages]
    assert sent == ["hi", "again", "third"]
    assert p.excluded_ids == [1]
    assert 3 not in p.included_ids


def test_message_too_long_for_context_is_clear():
    msgs = [msg(0, "user", "long " * 5000)]
    with pytest.raises(ContextTooSmall) as ei:
        plan("sys", msgs, 512)
    assert "too long for the context" in ei.value.message and "saved" in ei.value.message


def test_real_tokenizer_fitting(llama_engine):
    msgs = convo(30, words=30)
    p = plan("You are a helpful assistant.", msgs, 1024, reserve=200, engine=llama_engine)
    assert p.messages[0]["role"] == "system"
    assert 0 < p.left_out_turns < 30
    assert p.prompt_tokens == llama_engine.count_prompt_tokens(p.messages) <= 1024 - 200
    # one more turn would not have fitted
    bigger = [{"role": "system", "content": "You are a helpful assistant."}] + [
        {"role": m.role, "content": m.content} for m in msgs[2 * (p.left_out_turns - 1):]]
    assert llama_engine.count_prompt_tokens(bigger) > 1024 - 200


roles = st.sampled_from(["user", "assistant"])
texts = st.text(max_size=300)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(system=st.text(max_size=200), items=st.lists(st.tuples(roles, texts, st.booleans()), min_size=1, max_size=30),
       n_ctx=st.integers(64, 3000))
def test_context_builder_properties(system, items, n_ctx):
    msgs = [msg(i, r, c, in_context=keep) for i, (r, c, keep) in enumerate(items)]
    msgs.append(msg(len(msgs), "user", "the newest question"))
    try:
        p = plan(system, msgs, n_ctx)
    except ContextTooSmall:
        # only when the system prompt and the newest turn alone overflow
        alone = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": "the newest question"}]
        assert ENG.count_prompt_tokens(alone) > max(16, n_ctx - 64)
        return
    if system:
        assert p.messages[0] == {"role": "system", "content": system}
    assert p.messages[-1] == {"role": "user", "content": "the newest question"}
    assert p.prompt_tokens <= max(16, n_ctx - 64)
    usable = [m.id for m in msgs if m.in_context and not (m.role == "assistant" and not m.content)]
    # what is sent is a suffix of the usable messages, in order; the rest is reported
    assert usable[len(usable) - len(p.included_ids):] == p.included_ids
    assert p.left_out_ids + p.included_ids == usable
    assert set(p.excluded_ids) == {m.id for m in msgs if not m.in_context}


def test_bad_estimate_needs_only_logarithmic_exact_counts():
    """When the cheap estimate is far too low, the exact fit is found by gallop + bisect."""
    msgs = convo(200, words=20)
    calls = []

    def exact(chat):
        calls.append(1)
        return ENG.count_prompt_tokens(chat)

    p = build_context("sys", msgs, n_ctx=1000, reserve=64, count_prompt=exact,
                      count_text=lambda text: 1)  # a wildly optimistic estimate
    assert len(calls) <= 2 * 8 + 2, len(calls)  # log2(200) ~ 8; one group at a time would need ~190
    assert p.prompt_tokens <= 936
    one_more = [{"role": "system", "content": "sys"}] + [
        {"role": m.role, "content": m.content} for m in msgs[2 * (p.left_out_turns - 1):]]
    assert ENG.count_prompt_tokens(one_more) > 936  # the fit is still the largest that fits
