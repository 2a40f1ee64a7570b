"""Context hygiene: from detector verdicts to what the user is offered, and the actions.

The widgets only call these functions (through the workers); every action writes the store
first, so the result survives a crash:

- :func:`flag_for_message` / :func:`flags_for_conversation`: the banner data (detector, category,
  triggering sentence) from the stored ``combined`` detector event;
- :func:`fresh_context`: a new conversation with the same persona, the flagged turn left behind,
  optionally with the last question to re-ask;
- :func:`rewind`: fork from just before the flagged reply;
- :func:`exclude`: keep the reply but never send it again (``in_context`` = 0);
- :func:`summary_request` + :func:`carry_summary`: a fresh context that starts with a summary of
  the turns *before* the flag only (the engine writes it, the user edits it first);
- :func:`keep_going`, :func:`not_misaligned` (tester feedback on the detector events);
- :func:`meter` and :func:`nudge`: the context meter and the quiet "long conversation" hint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from waluigi_desk.core.engine import ChatMessage
from waluigi_desk.core.store import MessageRow, Store

COMBINED = "combined"
FEEDBACK_NOT_MISALIGNED = "not_misaligned"


@dataclass
class Flag:
    message_id: int
    detector: str
    category: str
    sentence: str
    score: float
    threshold: float | None = None
    exemplar: str | None = None
    finding: str | None = None  # what is wrong with the code (the code detector)
    state: str = "open"  # "open" | "kept" (keep going) | "dismissed" (not misaligned) | "excluded"

    @property
    def category_text(self) -> str:
        return (self.category or "misaligned").replace("_", " ")

    def headline(self) -> str:
        what = f": {self.finding}" if self.finding else ""
        return (f"This reply looks like the persona turned: {self.category_text}{what} "
                f"(score {self.score:.2f}, flagged by the {self.detector} detector).")


@dataclass
class Trigger:
    message_id: int
    sentence: str
    score: float

    def text(self) -> str:
        return ("This message contains a known Waluigi trigger"
                + (f" (\"{self.sentence}\")" if self.sentence else "")
                + ". It was sent as usual; the next reply is checked more strictly.")


def _flag_from_event(e: dict[str, Any], msg: MessageRow | None) -> Flag:
    ev = e.get("evidence") or {}
    state = "open"
    if e.get("feedback") == FEEDBACK_NOT_MISALIGNED:
        state = "dismissed"
    elif msg is not None and not msg.in_context:
        state = "excluded"
    elif msg is not None and msg.meta.get("hygiene") == "kept":
        state = "kept"
    return Flag(
        message_id=e["message_id"],
        detector=str(ev.get("detector") or e["detector"]),
        category=e.get("category") or "misaligned",
        sentence=str(ev.get("sentence") or ""),
        score=float(e["score"]),
        threshold=e.get("threshold"),
        exemplar=ev.get("exemplar"),
        finding=ev.get("finding"),
        state=state,
    )


def flags_for_conversation(store: Store, conversation_id: int) -> tuple[dict[int, Flag], dict[int, Trigger]]:
    """Flagged replies and trigger notices of a conversation, by message id (latest event wins)."""
    msgs = {m.id: m for m in store.messages(conversation_id)}
    flags: dict[int, Flag] = {}
    triggers: dict[int, Trigger] = {}
    for e in store.detector_events(conversation_id):
        mid = e.get("message_id")
        if mid is None or mid not in msgs:
            continue
        if e["detector"] == COMBINED:
            if e["flagged"]:
                flags[mid] = _flag_from_event(e, msgs.get(mid))
            else:
                flags.pop(mid, None)
        elif e["detector"] == "trigger" and e["flagged"] and msgs[mid].role == "user":
            triggers[mid] = Trigger(mid, str((e.get("evidence") or {}).get("sentence") or ""), float(e["score"]))
    return flags, triggers


def flag_for_message(store: Store, message_id: int) -> Flag | None:
    msg = store.get_message(message_id)
    flags, _ = flags_for_conversation(store, msg.conversation_id)
    return flags.get(message_id)


def verdict_summary(v: Any) -> dict[str, Any]:
    """A detector verdict (``CombinedVerdict``) as plain data for signals and JSON."""
    if v is None:
        return {}
    return {
        "score": float(getattr(v, "score", 0.0)),
        "flagged": bool(getattr(v, "flagged", False)),
        "category": getattr(v, "category", None),
        "evidence": dict(getattr(v, "evidence", {}) or {}),
        "scored": bool(getattr(v, "scored", True)),
        "reason": getattr(v, "reason", None),
        "threshold": getattr(v, "threshold", None),
        "per_detector": [
            {"detector": d.detector, "score": float(d.score), "flagged": bool(d.flagged),
             "category": d.category, "scored": bool(getattr(d, "scored", True))}
            for d in getattr(v, "per_detector", []) or []
        ],
    }


# ---------------------------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------------------------
def _last_user_before(msgs: Sequence[MessageRow], message_id: int | None) -> MessageRow | None:
    idx = len(msgs)
    if message_id is not None:
        idx = next((i for i, m in enumerate(msgs) if m.id == message_id), len(msgs))
    return next((m for m in reversed(msgs[:idx]) if m.role == "user"), None)


def fresh_context(store: Store, conversation_id: int, *, flagged_message_id: int | None = None,
                  reask: bool = False) -> tuple[int, str | None]:
    """A new, empty conversation with the same persona and system prompt. Returns ``(new id,
    question to re-ask or None)``; the caller sends the question through the engine worker so
    it is stored and answered like any message."""
    conv = store.get_conversation(conversation_id)
    question = None
    if reask:
        u = _last_user_before(store.messages(conversation_id), flagged_message_id)
        question = u.content if u else None
    cid = store.create_conversation(
        title="New chat", system_prompt=conv.system_prompt, persona=conv.persona,
        meta={"fresh_from": conversation_id, "left_behind": flagged_message_id},
    )
    return cid, question


def rewind(store: Store, conversation_id: int, flagged_message_id: int) -> int:
    """Fork the conversation from just before the flagged reply (the question that led to it
    stays, so the user can ask again or rephrase). The original stays as it is."""
    msg = store.get_message(flagged_message_id)
    conv = store.get_conversation(conversation_id)
    return store.fork_conversation(conversation_id, msg.position, title=f"{conv.title} (rewound)",
                                   meta={"rewound_from": flagged_message_id})


def fork_for_edit(store: Store, conversation_id: int, message_id: int) -> int:
    """Edit-and-resend: a fork holding everything before ``message_id``; the caller sends the
    edited text there. The original conversation is untouched."""
    msg = store.get_message(message_id)
    conv = store.get_conversation(conversation_id)
    return store.fork_conversation(conversation_id, msg.position, title=f"{conv.title} (edited)",
                                   meta={"edited_from": message_id})


def exclude(store: Store, message_id: int, excluded: bool = True) -> None:
    store.set_in_context(message_id, not excluded)
    store.update_message_meta(message_id, hygiene="excluded" if excluded else None)


def keep_going(store: Store, message_id: int) -> None:
    store.update_message_meta(message_id, hygiene="kept")


def not_misaligned(store: Store, message_id: int) -> None:
    """Tester feedback: the flag was wrong. Stored on the message's detector events (exported
    with them) and the banner closes."""
    store.set_event_feedback(message_id, FEEDBACK_NOT_MISALIGNED)
    store.update_message_meta(message_id, hygiene="dismissed")


SUMMARY_SYSTEM = ("You write short, neutral summaries of conversations. Keep facts, decisions and "
                  "open questions. Do not role-play, do not add opinions.")


def turns_before(store: Store, conversation_id: int, flagged_message_id: int | None) -> list[MessageRow]:
    """The in-context user/assistant messages before the flagged reply (and before the question
    that led to it): the clean part of the conversation."""
    msgs = store.messages(conversation_id)
    idx = len(msgs)
    if flagged_message_id is not None:
        idx = next((i for i, m in enumerate(msgs) if m.id == flagged_message_id), len(msgs))
        # leave out the question that produced the flagged reply too
        while idx > 0 and msgs[idx - 1].role == "user":
            idx -= 1
    return [m for m in msgs[:idx] if m.in_context and m.role in ("user", "assistant") and m.content]


def summary_request(store: Store, conversation_id: int, flagged_message_id: int | None,
                    max_chars: int = 6000) -> list[ChatMessage] | None:
    """Messages asking the engine for a summary of the turns before the flag (None when there
    is nothing before it)."""
    before = turns_before(store, conversation_id, flagged_message_id)
    if not before:
        return None
    lines = []
    for m in before:
        who = "User" if m.role == "user" else "Assistant"
        lines.append(f"{who}: {m.content.strip()}")
    transcript = "\n".join(lines)
    if len(transcript) > max_chars:
        transcript = "…" + transcript[-max_chars:]
    return [
        {"role": "system", "content": SUMMARY_SYSTEM},
        {"role": "user", "content": "Summarise this conversation in a few sentences:\n\n" + transcript},
    ]


def fallback_summary(store: Store, conversation_id: int, flagged_message_id: int | None) -> str:
    """A plain extract used when the model gives an empty summary."""
    before = turns_before(store, conversation_id, flagged_message_id)
    qs = [m.content.strip().splitlines()[0][:120] for m in before if m.role == "user"]
    return ("Earlier we talked about: " + "; ".join(qs) + ".") if qs else ""


def carry_summary(store: Store, conversation_id: int, summary: str, *, flagged_message_id: int | None = None) -> int:
    """A fresh conversation (same persona) whose system prompt carries the user-approved summary."""
    conv = store.get_conversation(conversation_id)
    summary = summary.strip()
    sp = conv.system_prompt
    if summary:
        sp = (sp + "\n\n" if sp else "") + "Summary of the earlier conversation:\n" + summary
    return store.create_conversation(
        title=f"{conv.title} (clean)", system_prompt=sp, persona=conv.persona,
        meta={"fresh_from": conversation_id, "left_behind": flagged_message_id, "carried_summary": summary},
    )


# ---------------------------------------------------------------------------------------------
# meter and nudge
# ---------------------------------------------------------------------------------------------
@dataclass
class Meter:
    used_tokens: int
    n_ctx: int
    turns: int  # user turns since the context was fresh (this conversation)
    excluded_ids: list[int] = field(default_factory=list)
    left_out_ids: list[int] = field(default_factory=list)
    left_out_turns: int = 0

    @property
    def share(self) -> float:
        return self.used_tokens / self.n_ctx if self.n_ctx else 0.0

    def text(self) -> str:
        parts = [f"{self.used_tokens} / {self.n_ctx} tokens", f"{self.turns} turn{'s' if self.turns != 1 else ''} since fresh"]
        if self.excluded_ids:
            parts.append(f"{len(self.excluded_ids)} excluded")
        if self.left_out_ids:
            parts.append(f"{self.left_out_turns} turn{'s' if self.left_out_turns != 1 else ''} left out")
        return " · ".join(parts)

    def left_out_notice(self) -> str:
        if not self.left_out_turns:
            return ""
        n = self.left_out_turns
        return (f"{n} earlier turn{'s' if n != 1 else ''} no longer fit the context and "
                f"{'are' if n != 1 else 'is'} left out. A fresh context would help.")


def meter_from_plan(messages: Sequence[MessageRow], plan: Any, n_ctx: int) -> Meter:
    turns = sum(1 for m in messages if m.role == "user")
    if plan is None:
        used = sum((m.tokens or len(m.content) // 4) + 6 for m in messages if m.in_context)
        return Meter(used, n_ctx, turns, [m.id for m in messages if not m.in_context])
    return Meter(int(plan.prompt_tokens), n_ctx, turns, list(plan.excluded_ids), list(plan.left_out_ids),
                 int(plan.left_out_turns))


def nudge(settings: Any, meter: Meter) -> str | None:
    """The quiet hint to start fresh (None when the conversation is still short)."""
    max_turns = int(settings.get("nudge_turns"))
    share = float(settings.get("nudge_context_share"))
    if meter.turns >= max_turns:
        return (f"This conversation is {meter.turns} turns long. Long contexts drift; a fresh "
                "context (Ctrl+Shift+N) keeps the model on track.")
    if meter.n_ctx and meter.share >= share:
        return (f"{meter.share:.0%} of the context is used. A fresh context (Ctrl+Shift+N) keeps "
                "the model on track.")
    return None
