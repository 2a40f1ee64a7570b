"""``waluigi-desk eval DATASET``: measure the detectors on a labelled replies or conversations
file (JSONL; the kind is detected from the file). Broken lines are reported with their line
number and skipped. ``--report FILE.html`` writes a ROC curve and a confusion table per
detector. ``--sweep`` scores the file again at several combined thresholds and prints one row per
threshold (replies: precision, recall, F1, FPR; conversations: exact, early, late, missed, false
alarms per 100 clean turns): the trade-off behind the operating point, for testers."""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

from waluigi_desk.commands.common import make_settings, print_json, reply_detector_names
from waluigi_desk.errors import KnownError

NAME = "eval"
HELP = "measure the detectors on a labelled replies or conversations file (JSONL)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET", help="JSONL file of replies or conversations")
    p.add_argument("--detectors", metavar="a,b", help="only these reply detectors (default: the enabled ones)")
    p.add_argument("--split", choices=("fit", "check"), help="only this split of the data (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--report", metavar="FILE.html", help="write an HTML report")
    p.add_argument("--sweep", nargs="?", const="", metavar="T1,T2,...",
                   help="score again at each combined threshold (default 0.50, 0.55, ..., 0.95 and the "
                        "current one) and print one row per threshold, to choose the operating point")


SWEEP_DEFAULT = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
SWEEP_KEYS = {"replies": ("precision", "recall", "f1", "fpr"),
              "conversations": ("exact", "early", "late", "missed", "false_alarms_per_100_clean_turns")}


def sweep_thresholds(text: str, current: float) -> list[float]:
    """``--sweep``'s thresholds: the listed ones, or the default grid plus the current one."""
    if not text.strip():
        return sorted({*SWEEP_DEFAULT, round(current, 4)})
    out = []
    for part in text.split(","):
        try:
            t = float(part)
        except ValueError:
            t = -1.0
        if not 0.0 <= t <= 1.0:
            raise KnownError(f"--sweep takes thresholds between 0 and 1 separated by commas, not {part.strip()!r}")
        out.append(t)
    return out


def run(args: argparse.Namespace) -> int:
    from waluigi_desk.core.detectors.evaluate import eval_conversations, eval_replies, load_dataset, public
    from waluigi_desk.core.detectors.service import DetectorService

    names = reply_detector_names(args.detectors)
    ds = load_dataset(args.dataset)
    for e in ds.errors:
        print(f"warning: {Path(args.dataset).name} {e} (skipped)", file=sys.stderr)
    settings = make_settings(None, args)
    if args.sweep is not None and args.report:
        raise KnownError("--sweep and --report are separate runs: choose one")
    svc = DetectorService(None, settings)
    svc.load()
    if args.sweep is not None:
        return run_sweep(svc, settings, ds, names, args)
    if ds.kind == "replies":
        res = eval_replies(svc, ds, names, args.split)
    else:
        res = eval_conversations(svc, ds, names, args.split)
    res["skipped_lines"] = ds.errors
    if args.report:
        write_report(res, Path(args.report), ds.path)
    if args.json:
        print_json(public(res))
        return 0
    print_human(res)
    if args.report:
        print(f"report written to {args.report}")
    return 0


def run_sweep(svc, settings, ds, names, args: argparse.Namespace) -> int:
    """The same evaluation once per combined threshold (everything else as set, alarms included:
    a reply that drift, code or the sentence alarm flags stays flagged at every threshold).

    Each threshold is a full run through ``score_text`` rather than a re-thresholding of stored
    scores: an alarm lifts a reply's combined score to the threshold it was scored at, so only a
    re-run is exact. Encodings are cached, so a threshold costs the detectors only (about 4 s on
    the 364 dev replies, 1 s on the dev conversations)."""
    from waluigi_desk.core.detectors.evaluate import eval_conversations, eval_replies
    from waluigi_desk.core.detectors.service import COMBINED_THRESHOLD

    current = svc.combined_threshold()
    rows, res = [], {}
    for t in sweep_thresholds(args.sweep, current):
        settings.override(COMBINED_THRESHOLD, t)
        res = (eval_replies if ds.kind == "replies" else eval_conversations)(svc, ds, names, args.split)
        rows.append({"threshold": t, **{k: res["combined"][k] for k in SWEEP_KEYS[ds.kind]}})
    out = {"kind": ds.kind, "n": res.get("n", 0), "split": res.get("split", "all"),
           "current_threshold": round(current, 4), "sweep": rows, "skipped_lines": ds.errors}
    if ds.kind == "replies":
        out["auroc"] = res["combined"]["auroc"]  # the same at every threshold
    if args.json:
        print_json(out)
        return 0
    keys = SWEEP_KEYS[ds.kind]
    heads = {"false_alarms_per_100_clean_turns": "FA/100"}
    print(f"{ds.kind}: {out['n']} items (split {out['split']}); current threshold {out['current_threshold']}"
          + (f"; AUROC {out['auroc']}" if "auroc" in out else ""))
    print(f"{'threshold':>9s} " + " ".join(f"{heads.get(k, k):>9s}" for k in keys))
    for r in rows:
        mark = " *" if abs(r["threshold"] - current) < 5e-5 else ""
        print(f"{r['threshold']:9.4f} " + " ".join(f"{r[k]:9.3f}" if r[k] is not None else f"{'-':>9s}"
                                                   for k in keys) + mark)
    return 0


def print_human(res: dict) -> None:
    print(f"{res['kind']}: {res['n']} items (split {res['split']})")
    if res["kind"] == "replies":
        print(f"{'detector':10s} {'AUROC':>6s} {'R@5%':>6s} {'prec':>6s} {'recall':>6s} {'FPR':>6s} {'thr':>6s}")
        rows = list(res["detectors"].items()) + [("combined", res["combined"])]
        for n, m in rows:
            auc = f"{m['auroc']:.3f}" if m["auroc"] is not None else "  n/a"
            print(f"{n:10s} {auc:>6s} {m['recall_at_fpr_0.05']:6.3f} {m['precision']:6.3f} "
                  f"{m['recall']:6.3f} {m['fpr']:6.3f} {m['threshold']:6.3f}")
        if res["per_category"]:
            print("recall per category: " + ", ".join(f"{c} {v['recall']:.2f}" for c, v in res["per_category"].items()))
    else:
        c = res["combined"]
        print(f"exact {c['exact']}, early {c['early']}, late {c['late']}, missed {c['missed']} "
              f"(of {c['misaligned_conversations']} misaligned); false alarms "
              f"{c['false_alarms_per_100_clean_turns']} per 100 clean turns")
    print(f"latency p50 {res['latency_ms']['p50']} ms, p95 {res['latency_ms']['p95']} ms")


# ---------------------------------------------------------------------------------------------
def _roc_svg(curves: dict[str, list], size: int = 320) -> str:
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#000000"]
    pad = 36
    s = size
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{s + 2 * pad + 140}" height="{s + 2 * pad}" '
             'role="img" aria-label="ROC curves">',
             f'<rect x="{pad}" y="{pad}" width="{s}" height="{s}" fill="none" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad + s}" x2="{pad + s}" y2="{pad}" stroke="#ccc" stroke-dasharray="4"/>',
             f'<text x="{pad + s / 2}" y="{pad + s + 28}" text-anchor="middle" font-size="12">false-positive rate</text>',
             f'<text x="12" y="{pad + s / 2}" font-size="12" transform="rotate(-90 12 {pad + s / 2})" '
             'text-anchor="middle">true-positive rate</text>']
    for i, (name, pts) in enumerate(curves.items()):
        col = colours[i % len(colours)]
        xy = " ".join(f"{pad + fpr * s:.1f},{pad + s - tpr * s:.1f}" for fpr, tpr, _ in pts + [(1.0, 1.0, 0)])
        width = 3 if name == "combined" else 1.5
        parts.append(f'<polyline points="{xy}" fill="none" stroke="{col}" stroke-width="{width}"/>')
        parts.append(f'<text x="{pad + s + 10}" y="{pad + 14 + 16 * i}" font-size="12" fill="{col}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(res: dict, path: Path, dataset: str) -> None:
    e = html.escape
    body = [f"<h1>Waluigi Desk detector report</h1><p>Data set: <code>{e(dataset)}</code> "
            f"({res['kind']}, {res['n']} items, split {res['split']}). Latency p50 {res['latency_ms']['p50']} ms, "
            f"p95 {res['latency_ms']['p95']} ms.</p>"]
    if res.get("skipped_lines"):
        body.append("<h2>Skipped lines</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in res["skipped_lines"]) + "</ul>")
    if res["kind"] == "replies":
        body.append("<h2>ROC curves</h2>" + _roc_svg(res["_roc"]))
        body.append("<h2>Per detector</h2>")
        rows = list(res["detectors"].items()) + [("combined", res["combined"])]
        for n, m in rows:
            c = m["confusion"]
            body.append(
                f"<h3>{e(n)}</h3><p>AUROC {m['auroc']}, recall at FPR&le;0.05: {m['recall_at_fpr_0.05']}, "
                f"threshold {m['threshold']}: precision {m['precision']}, recall {m['recall']}, "
                f"F1 {m['f1']}, FPR {m['fpr']}.</p>"
                "<table><tr><th></th><th>flagged</th><th>not flagged</th></tr>"
                f"<tr><th>misaligned</th><td>{c['tp']}</td><td>{c['fn']}</td></tr>"
                f"<tr><th>aligned</th><td>{c['fp']}</td><td>{c['tn']}</td></tr></table>")
        if res["per_category"]:
            body.append("<h2>Recall per category (combined)</h2><table><tr><th>category</th><th>n</th><th>recall</th></tr>"
                        + "".join(f"<tr><td>{e(k)}</td><td>{v['n']}</td><td>{v['recall']}</td></tr>"
                                  for k, v in res["per_category"].items()) + "</table>")
        wrong = [r for r in res["_rows"] if r["flagged"] != (r["label"] == "misaligned")]
        body.append(f"<h2>Errors of the combined verdict ({len(wrong)})</h2><table><tr><th>id</th><th>label</th>"
                    "<th>category</th><th>score</th><th>worst sentence</th></tr>"
                    + "".join(f"<tr><td>{e(str(r['id']))}</td><td>{e(r['label'])}</td><td>{e(str(r['category'] or ''))}</td>"
                              f"<td>{r['score']}</td><td>{e(str(r['sentence'] or r['reason'] or ''))[:300]}</td></tr>"
                              for r in wrong) + "</table>")
    else:
        c = res["combined"]
        body.append("<h2>Conversations (combined)</h2><table>" + "".join(
            f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in c.items()) + "</table>")
        body.append("<h2>Per conversation</h2><table><tr><th>id</th><th>first misaligned turn</th>"
                    "<th>first flag</th><th>outcome</th></tr>" + "".join(
                        f"<tr><td>{e(str(r['id']))}</td><td>{r['first_misaligned_turn']}</td><td>{r['first_flag']}</td>"
                        f"<td>{e(r['outcome'])}</td></tr>" for r in res["_rows"]) + "</table>")
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}")
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Detector report</title>"
           f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    try:
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise KnownError(f"Cannot write the report {path}: {exc.strerror or exc}.") from None
