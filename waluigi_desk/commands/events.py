"""``waluigi-desk events``: list or export the stored detector events (with the testers'
``feedback`` column) as CSV or JSONL."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from waluigi_desk.commands.common import open_app_store, print_json
from waluigi_desk.errors import KnownError

NAME = "events"
HELP = "list or export detector events (--export FILE.csv|FILE.jsonl)"
COLUMNS = ["id", "conversation_id", "message_id", "detector", "score", "threshold", "flagged", "category",
           "evidence", "feedback", "created_at"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export", metavar="FILE", help="write FILE.csv or FILE.jsonl")
    p.add_argument("--conversation", type=int, metavar="ID", help="only this conversation")
    p.add_argument("--json", action="store_true", help="print JSON")


def export(events: list[dict], path: Path) -> int:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise KnownError(f"Cannot export to {path.name}: use a .csv or .jsonl file name.")
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            if suffix == ".csv":
                w = csv.DictWriter(f, fieldnames=COLUMNS)
                w.writeheader()
                for e in events:
                    row = {k: e.get(k) for k in COLUMNS}
                    row["evidence"] = json.dumps(e.get("evidence") or {}, ensure_ascii=False)
                    row["flagged"] = int(bool(e.get("flagged")))
                    w.writerow(row)
            else:
                for e in events:
                    f.write(json.dumps({k: e.get(k) for k in COLUMNS}, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise KnownError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    return len(events)


def run(args: argparse.Namespace) -> int:
    store = open_app_store(args)
    events = store.detector_events(conversation_id=args.conversation)
    if args.export:
        n = export(events, Path(args.export))
        if args.json:
            print_json({"exported": n, "path": args.export})
        else:
            print(f"{n} events written to {args.export}")
        return 0
    if args.json:
        print_json(events)
        return 0
    for e in events:
        print(f"{e['id']:>6} conv {e['conversation_id']} msg {e['message_id']} {e['detector']:9s} "
              f"{e['score']:.3f} {'FLAG' if e['flagged'] else '    '} {e.get('category') or ''} "
              f"{('feedback: ' + e['feedback']) if e.get('feedback') else ''}")
    if not events:
        print("No detector events yet.")
    return 0
