"""Workers: QObjects that live in their own QThread. The window talks to them only by signal.

- :class:`EngineWorker` owns the engine (load, reload, generate through ``ChatSession``,
  summarise, context plans). One thread, one ``Llama`` object.
- :class:`DetectorWorker` owns the ``DetectorService`` (loaded lazily, in this thread, after the
  window is up; torch is never imported on the GUI thread).
- :class:`DbWorker` runs reads and writes the window needs (a sqlite connection belongs to the
  thread that opened it; ``Store.db`` is per thread).

Results come back as signals; connect them to slots of QObjects that live in the GUI thread
(a plain function would run in the worker thread).
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from waluigi_desk.core import hygiene
from waluigi_desk.errors import KnownError

TEXT_BATCH_S = 0.03  # streamed text goes to the GUI at most ~30 times a second


def _bug_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class EngineWorker(QObject):
    loading = Signal(str)
    loaded = Signal(object)  # dict: model_name, model_path, device_text, n_ctx, kind, gpu_supported
    load_failed = Signal(str, bool)  # message, an earlier model is still loaded
    conversation_created = Signal(int)
    user_added = Signal(int, object)  # conversation id, the stored user MessageRow
    started = Signal(int, object)  # conversation id, the stored (empty) reply MessageRow
    text = Signal(int, int, str)  # conversation id, reply id, new text since the last signal
    finished = Signal(object)  # dict (see _finish)
    planned = Signal(int, object)  # conversation id, hygiene.Meter
    summary_ready = Signal(int, object, str)  # conversation id, flagged message id, text
    error = Signal(str)
    bug = Signal(str)

    def __init__(self, store: Any, settings: Any, engine_factory: Callable[[Any], Any]):
        super().__init__()
        self.store = store
        self.settings = settings
        self.engine_factory = engine_factory
        self.engine: Any = None
        self.session: Any = None
        self.busy = threading.Event()

    # -- loading ------------------------------------------------------------------------------
    @Slot()
    def load(self) -> None:
        from waluigi_desk.core.chat import ChatSession

        self.loading.emit(str(self.settings.get("model_path") or "default model"))
        try:
            engine = self.engine_factory(self.settings)
            engine.load()
        except KnownError as exc:
            self.load_failed.emit(exc.message, self.engine is not None)
            return
        except Exception as exc:  # noqa: BLE001 - reported; the previous model stays
            self.load_failed.emit(f"The model could not be loaded: {_bug_text(exc)}", self.engine is not None)
            return
        old, self.engine = self.engine, engine
        if old is not None:
            try:
                old.close()
            except Exception:  # noqa: BLE001
                pass
        self.session = ChatSession(self.store, engine, self.settings)
        info = engine.info
        try:  # whether this llama-cpp-python build can offload (shown in Settings)
            from waluigi_desk.core.engine.llama import gpu_offload_supported

            supported = gpu_offload_supported()
        except ImportError:
            supported = False
        self.loaded.emit({
            "model_name": info.model_name,
            "model_path": info.model_path,
            "device_text": info.device_text,
            "n_ctx": info.n_ctx,
            "kind": info.kind,
            "gpu_offload": info.gpu_offload,
            "gpu_supported": supported,
        })

    # -- a turn -------------------------------------------------------------------------------
    def _need_session(self) -> bool:
        if self.session is None:
            self.error.emit("No model is loaded yet. Choose a model in Settings; your message is kept in the box.")
            return False
        return True

    def _stream(self, cid: int) -> tuple[Callable[[str], None], Callable[[], None], dict]:
        state = {"reply_id": 0, "buf": [], "last": 0.0}

        def on_started(reply_id: int, conversation_id: int, plan: Any) -> None:
            state["reply_id"] = reply_id
            self.started.emit(conversation_id, self.store.get_message(reply_id))

        def on_text(piece: str) -> None:
            state["buf"].append(piece)
            now = time.monotonic()
            if now - state["last"] >= TEXT_BATCH_S:
                self.text.emit(cid, state["reply_id"], "".join(state["buf"]))
                state["buf"].clear()
                state["last"] = now

        def flush() -> None:
            if state["buf"]:
                self.text.emit(cid, state["reply_id"], "".join(state["buf"]))
                state["buf"].clear()

        state["on_started"] = on_started
        return on_text, flush, state

    def _failed(self, cid: int | None, kind: str, error: str, restore_text: str | None = None) -> None:
        """A turn that produced no reply; ``restore_text`` goes back into the composer."""
        d = {"conversation_id": cid, "error": error, "reply_message_id": None,
             "user_message_id": None, "kind": kind, "finish_reason": "error", "text": "",
             "notices": [], "tokens_per_s": 0.0, "ttft_s": 0.0}
        if restore_text is not None:
            d["restore_text"] = restore_text
        self.finished.emit(d)

    def _finish(self, cid: int, turn: Any, user_id: int | None, kind: str) -> None:
        res = turn.result
        self.finished.emit({
            "conversation_id": cid,
            "user_message_id": user_id,
            "reply_message_id": turn.reply_message_id,
            "finish_reason": res.finish_reason if res else "error",
            "text": turn.text,
            "tokens_per_s": round(res.tokens_per_s, 2) if res else 0.0,
            "ttft_s": round(res.ttft_s, 4) if res else 0.0,
            "notices": list(turn.notices),
            "error": turn.error,
            "kind": kind,
        })
        self._plan(cid)  # the context as the next turn will see it (with this reply)

    @Slot(object)
    def send(self, req: dict) -> None:
        """req: conversation_id (or None: a new one with ``persona``/``system_prompt``), text, cancel."""
        if not self._need_session():
            self._failed(req.get("conversation_id"), "send", "no model", restore_text=req["text"])
            return
        self.busy.set()
        try:
            cid = req.get("conversation_id")
            if cid is None:
                cid = self.session.new_conversation(system_prompt=req.get("system_prompt"),
                                                    persona=req.get("persona") or "")
                self.conversation_created.emit(cid)
            user_id = self.session.add_user_message(cid, req["text"])
            self.user_added.emit(cid, self.store.get_message(user_id))
            self._reply(cid, req["cancel"], user_id, "send")
        except KnownError as exc:
            self.error.emit(exc.message)
            self._failed(req.get("conversation_id"), "send", exc.message, restore_text=req["text"])
        finally:
            self.busy.clear()

    def _reply(self, cid: int, cancel: threading.Event, user_id: int | None, kind: str, regenerate: bool = False) -> None:
        on_text, flush, state = self._stream(cid)
        if regenerate:
            turn = self.session.regenerate(cid, on_text, cancel, state["on_started"])
        else:
            turn = self.session.reply(cid, on_text, cancel, state["on_started"])
        flush()
        if turn.error:
            self.error.emit(turn.error)
        self._finish(cid, turn, user_id, kind)

    @Slot(object)
    def reply(self, req: dict) -> None:
        """Answer the conversation as it stands (after a rewind or an edit)."""
        if not self._need_session():
            return
        self.busy.set()
        try:
            self._reply(req["conversation_id"], req["cancel"], None, "reply")
        except KnownError as exc:
            self.error.emit(exc.message)
        finally:
            self.busy.clear()

    @Slot(object)
    def regenerate(self, req: dict) -> None:
        if not self._need_session():
            return
        self.busy.set()
        try:
            self._reply(req["conversation_id"], req["cancel"], None, "regenerate", regenerate=True)
        except KnownError as exc:
            self.error.emit(exc.message)
            self._failed(req["conversation_id"], "regenerate", exc.message)
        finally:
            self.busy.clear()

    # -- context meter ------------------------------------------------------------------------
    def _plan(self, cid: int, plan: Any = None) -> None:
        try:
            msgs = self.store.messages(cid)
            if plan is None and self.session is not None:
                try:
                    plan = self.session.plan_context(cid)
                except KnownError:
                    plan = None
            n_ctx = self.engine.info.n_ctx if self.engine is not None else int(self.settings.get("n_ctx"))
            self.planned.emit(cid, hygiene.meter_from_plan(msgs, plan, n_ctx))
        except KnownError as exc:
            self.error.emit(exc.message)

    @Slot(int)
    def plan(self, cid: int) -> None:
        self._plan(cid)

    # -- summaries ----------------------------------------------------------------------------
    @Slot(object)
    def summarise(self, req: dict) -> None:
        from waluigi_desk.core.engine import GenParams

        cid, flagged = req["conversation_id"], req.get("flagged_message_id")
        try:
            messages = hygiene.summary_request(self.store, cid, flagged)
            if messages is None:
                self.summary_ready.emit(cid, flagged, "")
                return
            if self.engine is None:
                self.summary_ready.emit(cid, flagged, hygiene.fallback_summary(self.store, cid, flagged))
                return
            params = GenParams(temperature=0.2, top_p=0.9, max_tokens=160, seed=int(self.settings.get("seed")))
            self.busy.set()
            try:
                res = self.engine.generate(messages, params, lambda _p: None, req.get("cancel") or threading.Event())
            finally:
                self.busy.clear()
            text = res.text.strip() or hygiene.fallback_summary(self.store, cid, flagged)
            self.summary_ready.emit(cid, flagged, text)
        except KnownError as exc:
            self.error.emit(exc.message)
            self.summary_ready.emit(cid, flagged, hygiene.fallback_summary(self.store, cid, flagged))

    def close(self) -> None:
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:  # noqa: BLE001
                pass
            self.engine = None


def default_detector_factory(store: Any, settings: Any) -> Any:
    """The real detector service, or None when the detectors are not installed."""
    try:
        from waluigi_desk.core.detectors.service import DetectorService
    except ImportError:
        return None
    return DetectorService(store, settings)


class DetectorWorker(QObject):
    state = Signal(str, str)  # "loading" | "ready" | "unavailable", message
    verdict = Signal(int, int, object)  # conversation id, message id, hygiene.verdict_summary dict
    trigger = Signal(int, int, object)  # conversation id, user message id, dict
    replayed = Signal(int, object)  # conversation id, list of {message_id, score, flagged, per_detector}
    error = Signal(str)

    def __init__(self, store: Any, settings: Any, factory: Callable[[Any, Any], Any] = default_detector_factory):
        super().__init__()
        self.store = store
        self.settings = settings
        self.factory = factory
        self.service: Any = None
        self.status = "idle"

    @Slot()
    def load(self) -> bool:
        if self.status == "ready":
            return True
        if self.status == "unavailable":
            return False
        self.status = "loading"
        self.state.emit("loading", "Loading detectors…")
        try:
            svc = self.factory(self.store, self.settings)
            if svc is None:
                self.status = "unavailable"
                self.state.emit("unavailable", "Detectors not installed.")
                return False
            svc.load()
        except Exception as exc:  # noqa: BLE001 - the chat goes on unscored
            self.status = "unavailable"
            self.state.emit("unavailable", f"Detectors unavailable: {_bug_text(exc)}")
            return False
        self.service = svc
        self.status = "ready"
        self.state.emit("ready", "Detectors ready.")
        return True

    def _call(self, failure: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """(ok, result) of ``fn()`` once the detectors are loaded; a failure is reported on
        ``error`` (a known one as is, a bug prefixed with ``failure``) and gives ``(False, None)``."""
        if not self.load():
            return False, None
        try:
            return True, fn()
        except KnownError as exc:
            self.error.emit(exc.message)
        except Exception as exc:  # noqa: BLE001
            self.error.emit(f"{failure}: {_bug_text(exc)}")
        return False, None

    @Slot(int, int)
    def check_user(self, cid: int, user_id: int) -> None:
        ok, v = self._call("The trigger check failed", lambda: self.service.check_user_message(cid, user_id))
        if ok and v is not None:
            self.trigger.emit(cid, user_id, {"score": float(v.score), "sentence": (v.evidence or {}).get("sentence") or ""})

    @Slot(int, int)
    def score(self, cid: int, message_id: int) -> None:
        ok, v = self._call("The reply could not be scored", lambda: self.service.score_reply(cid, message_id))
        if ok:
            self.verdict.emit(cid, message_id, hygiene.verdict_summary(v))

    @Slot(int)
    def replay(self, cid: int) -> None:
        """Score every reply of the conversation again under the current settings (no writes)."""
        if not self.load():
            self.replayed.emit(cid, [])
            return
        out = []
        try:
            msgs = self.store.messages(cid)
            history: list[str] = []
            prompt = ""
            for m in msgs:
                if m.role == "user":
                    prompt = m.content
                elif m.role == "assistant" and m.content:
                    v = self.service.score_text(m.content, prompt, list(history))
                    d = hygiene.verdict_summary(v)
                    d["message_id"] = m.id
                    out.append(d)
                    if m.in_context:
                        history.append(m.content)
        except Exception as exc:  # noqa: BLE001
            self.error.emit(f"Replay failed: {_bug_text(exc)}")
        self.replayed.emit(cid, out)


class DbWorker(QObject):
    """Runs ``fn(store)`` in its thread; the result (or the KnownError) comes back by token."""

    done = Signal(int, object, object)  # token, result, error (KnownError or bug text)

    def __init__(self, store: Any):
        super().__init__()
        self.store = store

    @Slot(int, object)
    def run(self, token: int, fn: Callable[[Any], Any]) -> None:
        try:
            result = fn(self.store)
        except KnownError as exc:
            self.done.emit(token, None, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug: report it, the app goes on
            self.done.emit(token, None, RuntimeError(_bug_text(exc) + "\n" + traceback.format_exc()))
            return
        self.done.emit(token, result, None)


def start_in_thread(worker: QObject, name: str) -> QThread:
    th = QThread()
    th.setObjectName(name)
    worker.moveToThread(th)
    th.start()
    return th
