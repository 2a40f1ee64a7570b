"""``waluigi-desk ask PROMPT``: one reply, printed as it streams, saved like any chat."""

from __future__ import annotations

import argparse
import sys
import time

from waluigi_desk.commands.common import load_engine, make_settings, open_app_store, print_json
from waluigi_desk.core.chat import ChatSession

NAME = "ask"
HELP = "ask one question and print the reply as it streams"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="the question (use - to read it from standard input)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--system", help="system prompt (default: the setting system_prompt)")
    p.add_argument("--max-tokens", type=int, help="longest reply in tokens")
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-save", action="store_true", help="do not keep the exchange in the database")


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    store = open_app_store(args, quiet=args.json)
    settings = make_settings(store, args)
    for name in ("max_tokens", "temperature", "seed"):
        v = getattr(args, name)
        if v is not None:
            settings.override(name, v)
    t0 = time.perf_counter()
    engine = load_engine(settings)
    session = ChatSession(store, engine, settings)
    cid = session.new_conversation(system_prompt=args.system)

    def out(piece: str) -> None:
        if not args.json:
            sys.stdout.write(piece)
            sys.stdout.flush()

    turn = session.send(cid, prompt, out)
    if not args.json:
        print()
    for n in turn.notices:
        print(f"note: {n}", file=sys.stderr)
    if args.no_save:
        store.purge_conversation(cid)
    if turn.error:
        if args.json:
            print_json({"error": turn.error, "reply": turn.text})
        else:
            print(f"error: {turn.error}", file=sys.stderr)
        return 1
    r = turn.result
    assert r is not None
    if args.json:
        print_json({
            "reply": r.text,
            "tokens": r.completion_tokens,
            "prompt_tokens": r.prompt_tokens,
            "seconds": round(time.perf_counter() - t0, 3),
            "generation_seconds": round(r.total_s, 3),
            "ttft_s": round(r.ttft_s, 4),
            "tokens_per_s": round(r.tokens_per_s, 2),
            "finish_reason": r.finish_reason,
            "model": engine.info.model_name,
            "model_path": engine.info.model_path,
            "engine": engine.info.kind,
            "gpu_offload": engine.info.gpu_offload,
            "device": engine.info.device_text,
            "conversation_id": None if args.no_save else cid,
        })
    engine.close()
    return 0
