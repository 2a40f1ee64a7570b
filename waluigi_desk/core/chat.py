"""One turn of a conversation, from the user's text to a stored reply. Shared by the window's
worker, the terminal chat and ``ask`` so they behave the same.

Order of writes (never lose a word):
1. the user's message is committed before generation starts;
2. the assistant row is inserted as ``interrupted`` when generation starts;
3. the streamed text is flushed at most every ``flush_every`` seconds (default 0.5 s);
4. at the end the row becomes ``complete`` (or stays ``interrupted`` if stopped or failed).
Reply hooks (the detectors) run after the reply is committed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from waluigi_desk.core.conversation import ContextPlan, build_context
from waluigi_desk.core.engine import Engine, GenParams, GenResult
from waluigi_desk.core.store import Store
from waluigi_desk.errors import EngineError, KnownError, StoreError


@dataclass
class TurnResult:
    conversation_id: int
    user_message_id: int | None
    reply_message_id: int | None
    result: GenResult | None
    plan: ContextPlan | None
    notices: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def text(self) -> str:
        return self.result.text if self.result else ""


ReplyHook = Callable[[Store, int, int], Any]  # (store, conversation_id, reply_message_id)


class ChatSession:
    def __init__(self, store: Store, engine: Engine, settings: Any, *, flush_every: float = 0.5):
        self.store = store
        self.engine = engine
        self.settings = settings
        self.flush_every = flush_every
        self.reply_hooks: list[ReplyHook] = []

    # -- conversations ------------------------------------------------------------------------
    def new_conversation(self, system_prompt: str | None = None, persona: str = "", title: str = "New chat") -> int:
        sp = self.settings.get("system_prompt") if system_prompt is None else system_prompt
        return self.store.create_conversation(title=title, system_prompt=sp, persona=persona)

    def reserve_tokens(self) -> int:
        n_ctx = self.engine.info.n_ctx
        return max(16, min(int(self.settings.get("max_tokens")), n_ctx // 2))

    def plan_context(self, conversation_id: int) -> ContextPlan:
        conv = self.store.get_conversation(conversation_id)
        return build_context(
            conv.system_prompt,
            self.store.messages(conversation_id),
            n_ctx=self.engine.info.n_ctx,
            reserve=self.reserve_tokens(),
            count_prompt=self.engine.count_prompt_tokens,
            count_text=self.engine.count_tokens,
        )

    # -- a turn -------------------------------------------------------------------------------
    def add_user_message(self, conversation_id: int, text: str) -> int:
        try:
            tokens = self.engine.count_tokens(text)
        except Exception:
            tokens = 0
        mid = self.store.add_message(conversation_id, "user", text, tokens=tokens)
        conv = self.store.get_conversation(conversation_id)
        if conv.title in ("New chat", "") and text.strip():
            self.store.rename_conversation(conversation_id, _title_from(text))
        return mid

    def send(
        self,
        conversation_id: int,
        text: str,
        on_text: Callable[[str], None],
        cancel: threading.Event | None = None,
        on_started: Callable[[int, int, ContextPlan], None] | None = None,
    ) -> TurnResult:
        """Store the user's message, then generate and store the reply."""
        user_id = self.add_user_message(conversation_id, text)
        turn = self.reply(conversation_id, on_text, cancel, on_started)
        turn.user_message_id = user_id
        return turn

    def reply(
        self,
        conversation_id: int,
        on_text: Callable[[str], None],
        cancel: threading.Event | None = None,
        on_started: Callable[[int, int, ContextPlan], None] | None = None,
    ) -> TurnResult:
        """Generate a reply to the conversation as it stands (used by send and regenerate)."""
        cancel = cancel or threading.Event()
        try:
            plan = self.plan_context(conversation_id)
        except KnownError as exc:
            return TurnResult(conversation_id, None, None, None, None, error=exc.message)
        notices = []
        if plan.left_out_turns:
            notices.append(
                f"{plan.left_out_turns} earlier turn{'s' if plan.left_out_turns != 1 else ''} no "
                "longer fit the context and were left out. A fresh context would help."
            )
        params = GenParams.from_settings(self.settings)
        meta = {"model": self.engine.info.model_name, "engine": self.engine.info.kind}
        reply_id = self.store.begin_reply(conversation_id, meta=meta)
        if on_started is not None:
            on_started(reply_id, conversation_id, plan)
        parts: list[str] = []
        last_flush = time.monotonic()
        flushed_len = 0
        store_error: list[str] = []

        def flush(force: bool = False) -> None:
            # called per token: check the clock before joining the text (joining every token
            # would make a long reply quadratic)
            nonlocal last_flush, flushed_len
            now = time.monotonic()
            if not force and now - last_flush < self.flush_every:
                return
            last_flush = now
            text = "".join(parts)
            if len(text) == flushed_len:
                return
            try:
                self.store.update_reply(reply_id, text)
                flushed_len = len(text)
            except StoreError as exc:
                if not store_error:
                    store_error.append(exc.message)

        def piece(p: str) -> None:
            parts.append(p)
            on_text(p)
            flush()

        error = None
        try:
            result = self.engine.generate(plan.messages, params, piece, cancel)
        except KnownError as exc:
            error = exc.message
            result = GenResult("".join(parts), "error", error=error)
        except Exception as exc:  # an engine that crashed mid-reply: keep what we have
            error = f"The model stopped with an error: {exc}"
            result = GenResult("".join(parts), "error", error=error)
        status = "complete" if result.finish_reason in ("stop", "length") else "interrupted"
        meta_out = {
            "finish_reason": result.finish_reason,
            "ttft_s": round(result.ttft_s, 4),
            "tokens_per_s": round(result.tokens_per_s, 2),
            "prompt_tokens": result.prompt_tokens,
            "prompt_tokens_evaluated": result.prompt_tokens_evaluated,
            "left_out_turns": plan.left_out_turns,
        }
        try:
            self.store.finish_reply(
                reply_id, result.text, status=status, tokens=result.completion_tokens, meta=meta_out
            )
        except StoreError as exc:
            store_error.append(exc.message)
        if store_error:
            notices.append(store_error[0])
        turn = TurnResult(conversation_id, None, reply_id, result, plan, notices, error)
        if status == "complete" and not store_error:
            for hook in self.reply_hooks:
                hook(self.store, conversation_id, reply_id)
        return turn

    def regenerate(
        self,
        conversation_id: int,
        on_text: Callable[[str], None],
        cancel: threading.Event | None = None,
        on_started: Callable[[int, int, ContextPlan], None] | None = None,
    ) -> TurnResult:
        """Replace the last reply with a new one; earlier versions stay reachable in the new
        reply's ``meta["alternatives"]``."""
        msgs = self.store.messages(conversation_id)
        if not msgs or msgs[-1].role != "assistant":
            raise EngineError("There is no reply to regenerate.")
        last = msgs[-1]
        alternatives = list(last.meta.get("alternatives", [])) + [last.content]
        self.store.delete_message(last.id)
        turn = self.reply(conversation_id, on_text, cancel, on_started)
        if turn.reply_message_id is not None:
            self.store.update_message_meta(turn.reply_message_id, alternatives=alternatives)
        return turn


def _title_from(text: str) -> str:
    line = " ".join(text.strip().split())
    return (line[:48] + "…") if len(line) > 48 else line
