"""``waluigi-desk eval DATASET``: measure the detectors on a labelled replies or conversations
file (JSONL; the kind is detected from the file). Broken lines are reported with their line
number and skipped. ``--report FILE.html`` writes a ROC curve and a confusion table per
detector."""

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


def run(args: argparse.Namespace) -> int:
    from waluigi_desk.core.detectors.evaluate import eval_conversations, eval_replies, load_dataset, public
    from waluigi_desk.core.detectors.service import DetectorService

    names = reply_detector_names(args.detectors)
    ds = load_dataset(args.dataset)
    for e in ds.errors:
        print(f"warning: {Path(args.dataset).name} {e} (skipped)", file=sys.stderr)
    settings = make_settings(None, args)
    svc = DetectorService(None, settings)
    svc.load()
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
