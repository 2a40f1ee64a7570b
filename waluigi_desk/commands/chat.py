"""``waluigi-desk chat``: terminal chat on the same engine and store as the window.

Lines starting with ``/`` are commands: /new (fresh context), /exclude (leave the last reply
out of the context), /quit. Ctrl+C while a reply streams stops it (the partial reply is kept
as ``interrupted``); Ctrl+C at the prompt or end of input quits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from waluigi_desk.commands.common import load_engine, make_settings, open_app_store
from waluigi_desk.core.chat import ChatSession
from waluigi_desk.errors import KnownError

NAME = "chat"
HELP = "chat in the terminal (same model, store and detectors as the window)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversation", type=int, metavar="ID", help="continue a stored conversation")
    p.add_argument("--system", help="system prompt for a new conversation")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--no-detectors", action="store_true", help="do not score replies")


def _attach_detectors(session: ChatSession, settings, quiet: bool) -> None:
    try:
        from waluigi_desk.core.detectors.service import attach_to_session
    except ImportError:
        return
    attach_to_session(session, settings, report=lambda msg: print(f"\n[detector] {msg}", file=sys.stderr))


def run(args: argparse.Namespace) -> int:
    store = open_app_store(args)
    settings = make_settings(store, args)
    for name in ("max_tokens", "temperature", "seed"):
        v = getattr(args, name)
        if v is not None:
            settings.override(name, v)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Loading model…", file=sys.stderr)
    engine = load_engine(settings)
    session = ChatSession(store, engine, settings)
    if not args.no_detectors:
        _attach_detectors(session, settings, quiet=not interactive)
    cid = args.conversation or session.new_conversation(system_prompt=args.system)
    store.get_conversation(cid)  # a clear error if it does not exist
    print(f"{engine.info.model_name} on {engine.info.device_text}. Conversation {cid}. "
          "/new for a fresh context, /quit to leave.", file=sys.stderr, flush=True)
    cancel = threading.Event()
    generating = threading.Event()

    def on_sigint(signum, frame):  # noqa: ARG001
        if generating.is_set():
            cancel.set()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    while True:
        if interactive:
            sys.stdout.write("\n> ")
            sys.stdout.flush()
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            break
        if not line:
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() in ("/quit", "/exit"):
            break
        if text.strip() == "/new":
            cid = session.new_conversation(system_prompt=args.system)
            print(f"Fresh context: conversation {cid}.", file=sys.stderr, flush=True)
            continue
        if text.strip() == "/exclude":
            msgs = [m for m in store.messages(cid) if m.role == "assistant"]
            if msgs:
                store.set_in_context(msgs[-1].id, False)
                print("The last reply is now left out of the context.", file=sys.stderr, flush=True)
            continue
        cancel.clear()
        generating.set()
        try:
            turn = session.send(cid, text, lambda p: (sys.stdout.write(p), sys.stdout.flush()), cancel)
        except KnownError as exc:  # e.g. the disk is full: say so and keep the chat going
            print(f"error: {exc.message}", file=sys.stderr, flush=True)
            continue
        finally:
            generating.clear()
        sys.stdout.write("\n")
        sys.stdout.flush()
        if turn.result and turn.result.finish_reason == "cancelled":
            print("[stopped; the partial reply is saved]", file=sys.stderr, flush=True)
        for n in turn.notices:
            print(f"note: {n}", file=sys.stderr, flush=True)
        if turn.error:
            print(f"error: {turn.error}", file=sys.stderr, flush=True)
    engine.close()
    return 0
