"""Datasets, metrics and the fit/check split behind ``waluigi-desk eval`` and ``fit``.

Data set format (../shared/DESIGN.md):
- replies: JSONL objects with ``id``, ``prompt``, ``reply``, ``label`` (misaligned|aligned),
  optional ``category``;
- conversations: JSONL objects with ``id``, ``system``, ``turns`` ([{role, content}]),
  ``first_misaligned_turn`` (0-based among assistant turns, or null).
The kind is detected from the file. A broken line is reported with its number and skipped.

The split: an item belongs to ``fit`` when the first byte of sha256(id) is even, else ``check``
(deterministic, independent of file order). Thresholds and the combined rule are fitted on
``fit`` only.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from waluigi_desk.core.detectors.logreg import auroc, roc_points, threshold_at_fpr


@dataclass
class Dataset:
    kind: str  # "replies" | "conversations"
    items: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)  # "line N: reason"
    path: str = ""


def split_of(item_id: Any) -> str:
    return "fit" if hashlib.sha256(str(item_id).encode()).digest()[0] % 2 == 0 else "check"


def _check_reply(o: dict) -> str | None:
    if not isinstance(o.get("reply"), str):
        return "'reply' must be a string"
    if o.get("label") not in ("misaligned", "aligned"):
        return "'label' must be 'misaligned' or 'aligned'"
    if "prompt" in o and not isinstance(o["prompt"], (str, type(None))):
        return "'prompt' must be a string"
    return None


def _check_conv(o: dict) -> str | None:
    turns = o.get("turns")
    if not isinstance(turns, list) or not turns:
        return "'turns' must be a non-empty list"
    for t in turns:
        if not isinstance(t, dict) or t.get("role") not in ("user", "assistant", "system") or \
                not isinstance(t.get("content"), str):
            return "every turn needs 'role' (user|assistant) and 'content' (a string)"
    n_asst = sum(1 for t in turns if t["role"] == "assistant")
    f = o.get("first_misaligned_turn")
    if f is not None and (not isinstance(f, int) or isinstance(f, bool) or not 0 <= f < n_asst):
        return f"'first_misaligned_turn' must be null or an assistant-turn index 0..{n_asst - 1}"
    return None


def load_dataset(path: str | Path) -> Dataset:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        from waluigi_desk.errors import KnownError

        raise KnownError(f"Cannot read the data set {p}: {exc.strerror or exc}.") from None
    text = raw.decode("utf-8", errors="replace")
    kind: str | None = None
    items: list[dict] = []
    errors: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(o, dict):
            errors.append(f"line {n}: not a JSON object")
            continue
        k = "conversations" if "turns" in o else "replies" if "reply" in o else None
        if k is None:
            errors.append(f"line {n}: neither a reply ('reply') nor a conversation ('turns')")
            continue
        if kind is None:
            kind = k
        elif k != kind:
            errors.append(f"line {n}: a {k[:-1]} in a file of {kind}")
            continue
        err = _check_reply(o) if k == "replies" else _check_conv(o)
        if err:
            errors.append(f"line {n}: {err}")
            continue
        o.setdefault("id", f"line-{n}")
        o["_line"] = n
        items.append(o)
    if kind is None:
        from waluigi_desk.errors import KnownError

        raise KnownError(f"{p} holds no usable replies or conversations"
                         + (f" ({len(errors)} broken lines; first: {errors[0]})." if errors else "."))
    return Dataset(kind, items, errors, str(p))


# ---------------------------------------------------------------------------------------------
def binary_metrics(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> dict[str, Any]:
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    flag = s >= threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    fn, tn = int((~flag & y).sum()), int((~flag & ~y).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    auc = auroc(s, y)
    _, rec05, _ = threshold_at_fpr(s, y, 0.05)
    return {
        "precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "fpr": round(fpr, 4),
        "auroc": None if np.isnan(auc) else round(auc, 4), "recall_at_fpr_0.05": round(rec05, 4),
        "threshold": round(float(threshold), 4), "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "n": int(len(y)),
    }


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q * 100)) if xs else 0.0


def eval_replies(service, ds: Dataset, detectors: Sequence[str] | None = None,
                 split: str | None = None) -> dict[str, Any]:
    from waluigi_desk.core.detectors import registry

    items = [o for o in ds.items if split is None or split_of(o["id"]) == split]
    names = list(detectors) if detectors else [d.name for d in service.detectors
                                                if d.applies_to == "reply" and d.enabled]
    per: dict[str, list[float]] = {n: [] for n in names}
    scored_n = {n: 0 for n in names}
    thr: dict[str, float] = {}
    comb, labels, cats, times, rows = [], [], [], [], []
    not_scored = 0
    # warm-up so the latency figures are after warm-up
    for o in items[:3]:
        service.score_text(o["reply"], o.get("prompt") or "", only=names)
    for o in items:
        t0 = time.perf_counter()
        v = service.score_text(o["reply"], o.get("prompt") or "", only=names)
        times.append((time.perf_counter() - t0) * 1000)
        if not v.scored:
            not_scored += 1
        by = {d.detector: d for d in v.per_detector}
        for n in names:
            d = by.get(n)
            per[n].append(d.score if d is not None and d.scored else 0.0)
            scored_n[n] += int(d is not None and d.scored)
            if d is not None and d.threshold is not None:
                thr[n] = d.threshold
        comb.append(v.score)
        labels.append(o["label"] == "misaligned")
        cats.append(o.get("category") or "")
        rows.append({"id": o["id"], "label": o["label"], "category": o.get("category"),
                     "score": round(v.score, 4), "flagged": v.flagged,
                     "scores": {n: round(s[-1], 4) for n, s in per.items()},
                     "sentence": v.evidence.get("sentence"), "reason": v.reason})
    from waluigi_desk.core.detectors.base import SCHEMA  # noqa: F401 - settings registered

    out_det = {}
    for n in names:
        t = thr.get(n, service.detector(n).threshold)
        out_det[n] = binary_metrics(per[n], labels, t)
        out_det[n]["scored"] = scored_n[n]  # drift scores nothing without earlier replies
    cthr = service.combined_threshold()
    combined = binary_metrics(comb, labels, cthr)
    per_cat: dict[str, dict[str, Any]] = {}
    for c in sorted({c for c, l in zip(cats, labels) if l and c}):
        idx = [i for i, (cc, l) in enumerate(zip(cats, labels)) if l and cc == c]
        per_cat[c] = {"recall": round(sum(comb[i] >= cthr for i in idx) / len(idx), 4), "n": len(idx)}
    return {
        "kind": "replies", "n": len(items), "split": split or "all", "not_scored": not_scored,
        "detectors": out_det, "combined": combined, "per_category": per_cat,
        "latency_ms": {"p50": round(_pct(times, 0.5), 2), "p95": round(_pct(times, 0.95), 2)},
        "_roc": {n: roc_points(per[n], labels) for n in names} | {registry.COMBINED: roc_points(comb, labels)},
        "_rows": rows,
    }


def conversation_turns(o: dict) -> list[tuple[str, str, list[str], list[str]]]:
    """(reply, prompt, history, user_messages_since_last_reply) per assistant turn."""
    out, history, prompt, users = [], [], "", []
    for t in o["turns"]:
        if t["role"] == "user":
            prompt = t["content"]
            users.append(t["content"])
        elif t["role"] == "assistant":
            out.append((t["content"], prompt, list(history), users))
            history.append(t["content"])
            users = []
    return out


def eval_conversations(service, ds: Dataset, detectors: Sequence[str] | None = None,
                       split: str | None = None) -> dict[str, Any]:
    items = [o for o in ds.items if split is None or split_of(o["id"]) == split]
    names = list(detectors) if detectors else None
    counts = {"exact": 0, "early": 0, "late": 0, "missed": 0}
    n_mis = 0
    clean_turns = false_alarms = 0
    clean_convs = clean_convs_flagged = 0
    times: list[float] = []
    rows = []
    for o in items:
        fmt = o.get("first_misaligned_turn")
        flags = []
        for i, (reply, prompt, history, users) in enumerate(conversation_turns(o)):
            strict = False
            for u in users:
                tv = service.check_text(u)
                strict = strict or bool(tv is not None and tv.flagged)
            t0 = time.perf_counter()
            v = service.score_text(reply, prompt, history, strict=strict, only=names)
            times.append((time.perf_counter() - t0) * 1000)
            flags.append(v.flagged)
            if fmt is None or i < fmt:
                clean_turns += 1
                false_alarms += int(v.flagged)
        first = next((i for i, f in enumerate(flags) if f), None)
        if fmt is None:
            clean_convs += 1
            clean_convs_flagged += int(first is not None)
            outcome = "clean-flagged" if first is not None else "clean-ok"
        else:
            n_mis += 1
            outcome = ("missed" if first is None else "exact" if first == fmt
                       else "early" if first < fmt else "late")
            counts[outcome] += 1
        rows.append({"id": o["id"], "first_misaligned_turn": fmt, "first_flag": first, "outcome": outcome,
                     "flags": flags})
    comb = {k: round(v / n_mis, 4) if n_mis else None for k, v in counts.items()}
    comb["false_alarms_per_100_clean_turns"] = round(100 * false_alarms / clean_turns, 3) if clean_turns else 0.0
    comb["misaligned_conversations"] = n_mis
    comb["clean_conversations"] = clean_convs
    comb["clean_conversations_flagged"] = clean_convs_flagged
    comb["clean_turns"] = clean_turns
    return {"kind": "conversations", "n": len(items), "split": split or "all", "combined": comb,
            "latency_ms": {"p50": round(_pct(times, 0.5), 2), "p95": round(_pct(times, 0.95), 2)},
            "_rows": rows}


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the private keys (ROC points, rows) used by the HTML report."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
