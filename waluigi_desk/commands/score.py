"""``waluigi-desk score REPLY [--prompt PROMPT]``: score one reply with the detectors as the app
would, and print every detector's verdict next to the combined one. For testers probing a
detector after changing its settings: it reads the same settings as the window (enabled,
threshold) and stores no event (only the embedding cache). A prompt that is a known trigger makes
the check strict, as in the app."""

from __future__ import annotations

import argparse
import sys

from waluigi_desk.commands.common import make_settings, open_app_store, print_json, reply_detector_names

NAME = "score"
HELP = "score one reply with the current detector settings and show every detector's verdict"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("reply", metavar="REPLY", help="the reply to score (use - to read it from standard input)")
    p.add_argument("--prompt", default="", help="the user message it answers (also checked for triggers)")
    p.add_argument("--detectors", metavar="a,b", help="only these reply detectors (default: the enabled ones)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _short(s: str | None, n: int = 100) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def run(args: argparse.Namespace) -> int:
    from waluigi_desk.core.detectors.service import DetectorService

    names = reply_detector_names(args.detectors)
    reply = sys.stdin.read() if args.reply == "-" else args.reply
    store = open_app_store(args, quiet=True)
    try:
        svc = DetectorService(store, make_settings(store, args))
        svc.load()
        trig = svc.check_text(args.prompt) if args.prompt else None
        strict = bool(trig is not None and trig.flagged)
        v = svc.score_text(reply, args.prompt, strict=strict, only=names)
    finally:
        store.close()
    if args.json:
        out = v.to_json()
        out["trigger"] = trig.to_json() if trig is not None else None
        print_json(out)
        return 0
    if trig is not None and trig.flagged:
        print(f"prompt: known trigger (score {trig.score:.2f}): \"{_short(trig.evidence.get('sentence'))}\"; "
              "the reply is checked strictly")
    if not v.scored:
        print(f"not scored: {v.reason}")
        return 0
    mark = "FLAGGED" if v.flagged else "ok"
    cat = f" [{v.category}]" if v.flagged and v.category else ""
    print(f"combined: {mark} {v.score:.2f} (threshold {v.threshold:.2f}){cat}")
    if v.flagged:
        print(f"  led by {v.evidence.get('detector')}: \"{_short(v.evidence.get('sentence'))}\"")
    for d in v.per_detector:
        if not d.scored:
            print(f"  {d.detector:11s} not scored: {d.reason}")
            continue
        thr = f"{d.threshold:.2f}" if d.threshold is not None else "-"
        flag = "flag" if d.flagged else "    "
        sent = _short(d.evidence.get("sentence"), 70)
        line = f"  {d.detector:11s} {d.score:.2f} / {thr} {flag} {d.category or '':20s} "
        print((line + (f"\"{sent}\"" if sent else "")).rstrip())
    return 0
