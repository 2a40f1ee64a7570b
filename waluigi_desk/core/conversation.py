"""What goes into the model's context, and what is left out.

Rules:
- the system prompt is always first and never silently dropped;
- messages the user excluded (``in_context`` false, e.g. a flagged reply) are never sent;
- empty interrupted replies are not sent;
- when the prompt would not fit ``n_ctx`` (less room kept for the reply), whole turns are left
  out from the oldest on, and the plan says how many so the UI can tell the user and offer a
  fresh context. The newest user message always stays; if it alone does not fit with the system
  prompt, :class:`ContextTooSmall` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from waluigi_desk.core.engine import ChatMessage
from waluigi_desk.core.store import MessageRow
from waluigi_desk.errors import KnownError

PER_MESSAGE_OVERHEAD = 6  # role markers of a chat template, a cautious estimate for fitting


class ContextTooSmall(KnownError):
    pass


@dataclass
class ContextPlan:
    messages: list[ChatMessage]
    included_ids: list[int]
    left_out_ids: list[int] = field(default_factory=list)  # did not fit
    excluded_ids: list[int] = field(default_factory=list)  # the user took them out
    prompt_tokens: int = 0
    n_ctx: int = 0
    reserve: int = 0
    left_out_turns: int = 0  # whole turns (a user message and its replies) that did not fit


def _groups(msgs: Sequence[MessageRow]) -> list[list[MessageRow]]:
    """Split into turns: a user message with the replies that follow it."""
    groups: list[list[MessageRow]] = []
    for m in msgs:
        if m.role == "user" or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    return groups


def build_context(
    system_prompt: str,
    messages: Sequence[MessageRow],
    *,
    n_ctx: int,
    reserve: int,
    count_prompt: Callable[[Sequence[ChatMessage]], int],
    count_text: Callable[[str], int] | None = None,
) -> ContextPlan:
    """Fit ``messages`` (in order) into ``n_ctx - reserve`` tokens.

    ``count_prompt`` gives the exact token count of a whole prompt (the engine's chat template);
    ``count_text`` (optional) a fast per-message estimate used to pick the cut before the exact
    check. ``reserve`` is the room kept for the reply."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    excluded = [m.id for m in messages if not m.in_context]
    usable = [
        m
        for m in messages
        if m.in_context and m.role in ("user", "assistant") and not (m.role == "assistant" and not m.content)
    ]
    groups = _groups(usable)
    budget = max(16, n_ctx - reserve)

    def as_chat(gs: Sequence[list[MessageRow]]) -> list[ChatMessage]:
        return system + [{"role": m.role, "content": m.content} for g in gs for m in g]

    def est(m: MessageRow) -> int:
        if m.tokens:
            return m.tokens + PER_MESSAGE_OVERHEAD
        if count_text is not None:
            return count_text(m.content) + PER_MESSAGE_OVERHEAD
        return len(m.content) // 3 + PER_MESSAGE_OVERHEAD

    # a cheap first cut from the stored token counts, then the exact check
    start = 0
    if count_text is not None or all(m.tokens for m in usable):
        sizes = [sum(est(m) for m in g) for g in groups]
        total = sum(sizes) + (count_text(system_prompt) if count_text and system_prompt else len(system_prompt) // 3)
        while start < len(groups) - 1 and total > budget:
            total -= sizes[start]
            start += 1
    chat = as_chat(groups[start:])
    tokens = count_prompt(chat)
    if tokens > budget and start < len(groups) - 1:
        # the estimate was short: find the first start that fits with few exact counts
        # (gallop, then bisect; the exact count only falls as start grows)
        last = len(groups) - 1
        lo, step, hi = start, 1, min(start + 1, last)  # count(lo) > budget
        fits: dict[int, tuple[list[ChatMessage], int]] = {}
        while True:
            c = as_chat(groups[hi:])
            t = count_prompt(c)
            if t <= budget or hi == last:
                fits[hi] = (c, t)
                break
            lo, step = hi, step * 2
            hi = min(hi + step, last)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            c = as_chat(groups[mid:])
            t = count_prompt(c)
            if t <= budget:
                hi, fits[mid] = mid, (c, t)
            else:
                lo = mid
        start = hi
        chat, tokens = fits[hi]
    if tokens > budget:
        last = groups[-1][0].content if groups else ""
        sys_t = count_prompt(system) if system else 0
        raise ContextTooSmall(
            f"The message is too long for the context: the system prompt and your last message need "
            f"about {tokens} tokens, but only {budget} of the {n_ctx}-token context are free for them"
            f" (system prompt {sys_t} tokens, message {len(last)} characters). Shorten it, or raise "
            "the context size in Settings; your message is saved."
        )
    left_out = [m.id for g in groups[:start] for m in g]
    included = [m.id for g in groups[start:] for m in g]
    return ContextPlan(
        messages=chat,
        included_ids=included,
        left_out_ids=left_out,
        excluded_ids=excluded,
        prompt_tokens=tokens,
        n_ctx=n_ctx,
        reserve=reserve,
        left_out_turns=start,
    )
