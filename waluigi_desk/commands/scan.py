"""``waluigi-desk scan CONVERSATION_ID``: re-score a stored conversation with the current
detector settings (writes new detector events; triggers in user messages make the following
reply's check stricter, as in the app)."""

from __future__ import annotations

import argparse

from waluigi_desk.commands.common import make_settings, open_app_store, print_json

NAME = "scan"
HELP = "re-score a stored conversation with the current detector settings"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("conversation_id", type=int, metavar="CONVERSATION_ID")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from waluigi_desk.core.detectors.service import DetectorService

    store = open_app_store(args)
    settings = make_settings(store, args)
    cid = args.conversation_id
    store.get_conversation(cid)  # a clear error when it does not exist
    svc = DetectorService(store, settings)
    svc.load()
    out = []
    for m in store.messages(cid):
        if m.role == "user":
            t = svc.check_user_message(cid, m.id)
            if t is not None:
                out.append({"message_id": m.id, "role": "user", "trigger": True, "score": round(t.score, 4),
                            "sentence": t.evidence.get("sentence")})
        elif m.role == "assistant" and m.content.strip():
            v = svc.score_reply(cid, m.id)
            out.append({"message_id": m.id, "role": "assistant", "scored": v.scored, "reason": v.reason,
                        "score": round(v.score, 4), "flagged": v.flagged, "category": v.category,
                        "evidence": v.evidence,
                        "detectors": {d.detector: round(d.score, 4) for d in v.per_detector if d.scored}})
    if args.json:
        print_json({"conversation_id": cid, "messages": out})
        return 0
    for r in out:
        if r["role"] == "user":
            print(f"#{r['message_id']} user: known trigger (score {r['score']:.2f}): {r['sentence']}")
        elif not r["scored"]:
            print(f"#{r['message_id']} reply: not scored: {r['reason']}")
        else:
            mark = "FLAGGED" if r["flagged"] else "ok"
            extra = f" [{r['category']}] \"{(r['evidence'].get('sentence') or '')[:100]}\"" if r["flagged"] else ""
            print(f"#{r['message_id']} reply: {mark} {r['score']:.2f}{extra}")
    if not out:
        print("No messages to score.")
    return 0
