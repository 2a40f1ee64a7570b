"""``waluigi-desk fit``: rebuild what the detectors learn (axis heads on the banks; calibrations,
thresholds and the combined rule on the ``fit`` split of the dev data). See
``waluigi_desk/core/detectors/fit.py`` and docs/detectors.md."""

from __future__ import annotations

import argparse
import sys

from waluigi_desk.commands.common import print_json
from waluigi_desk.paths import REPO_ROOT

NAME = "fit"
# the data whose fit split (first byte of sha256(id) even) the calibrations, thresholds and the
# combined rule are fitted on: the dev set, and holdout3's fit half (no longer blind since session
# 7 chose a training file on it; its 90 aligned replies and 15 clean conversations roughly double
# the negatives the operating point is set by: docs/detectors.md, session 9)
FIT_REPLIES = ("data/dev/replies.jsonl", "data/holdout3/replies.jsonl")
FIT_CONVERSATIONS = ("data/dev/conversations.jsonl", "data/holdout3/conversations.jsonl")
HELP = "fit the detectors: axis heads on the banks, thresholds + combined rule on the fit split of dev + holdout3"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", action="store_true", help="also retrain the axis heads, the neighbours memory and the stance network on the banks and paired replies first")
    p.add_argument("--head-only", action="store_true", help="only retrain the axis heads, the neighbours memory and the stance network")
    p.add_argument("--replies", default=",".join(FIT_REPLIES), metavar="FILES",
                   help="labelled replies, comma-separated; their fit split is used "
                        f"(default: {', '.join(FIT_REPLIES)})")
    p.add_argument("--conversations", default=",".join(FIT_CONVERSATIONS),
                   metavar="FILES", help="labelled conversations, comma-separated; their fit split is used "
                                         f"(default: {', '.join(FIT_CONVERSATIONS)})")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from waluigi_desk.core.detectors import axis, banks
    from waluigi_desk.core.detectors.evaluate import Dataset, load_dataset
    from waluigi_desk.core.detectors.fit import fit_all, write_fitted
    from waluigi_desk.core.detectors.service import DetectorService
    from waluigi_desk.errors import KnownError

    report: dict = {}
    svc = DetectorService()
    if args.head or args.head_only:
        banks.clear()
        report["head"] = axis.fit_head(svc.embedder)
        svc = DetectorService()
        if args.head_only:
            print_json(report) if args.json else print(f"axis heads, neighbours memory and stance network written: {report['head']}")
            return 0
    def load_all(paths: str, kind: str, optional: bool = False) -> Dataset | None:
        """Several files of one kind as one data set (relative paths are the repository's; the
        fitted file records them as given). ``optional``: missing files are left out."""
        names = [f.strip() for f in paths.split(",") if f.strip()]
        where = {f: Path(f) if Path(f).is_absolute() else REPO_ROOT / f for f in names}
        sets = [(f, load_dataset(where[f])) for f in names if not optional or where[f].exists()]
        for f, d in sets:
            if d.kind != kind:
                raise KnownError(f"{f} holds {d.kind}, not {kind}.")
        if not sets:
            return None
        return Dataset(kind, [o for _, d in sets for o in d.items],
                       [f"{f}: {e}" for f, d in sets for e in d.errors], ",".join(f for f, _ in sets))

    replies = load_all(args.replies, "replies")
    if replies is None:
        raise KnownError("fit needs at least one replies file (--replies).")
    convs = load_all(args.conversations, "conversations", optional=True)
    for e in replies.errors + (convs.errors if convs else []):
        print(f"warning: skipped {e}", file=sys.stderr)
    svc.load()
    params = fit_all(svc, replies, convs, log=(lambda s: None) if args.json else
                     (lambda s: print(s, file=sys.stderr)))
    report["fitted"] = params
    report["path"] = write_fitted(params)
    if args.json:
        print_json(report)
    else:
        for n, d in params["detectors"].items():
            print(f"{n:10s} threshold {d['threshold']:.3f}  fit AUROC {d['fit_auroc']:.3f}  "
                  f"recall {d['fit_recall']:.2f} at FPR {d['fit_fpr']:.2f}")
        c = params["combined"]
        print(f"{'combined':10s} threshold {c['threshold']:.3f}  fit AUROC {c['fit_auroc']:.3f}  "
              f"recall {c['fit_recall']:.2f} at FPR {c['fit_fpr']:.2f}  weights {c['weights']}")
        print(f"written to {report['path']}")
    return 0
