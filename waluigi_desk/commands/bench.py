"""``waluigi-desk bench [--json] [--quick]``: speed and memory figures against issue 5's targets
(see waluigi_desk/core/bench.py for what each figure means and how it is measured)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from waluigi_desk.commands.common import make_settings, print_json

NAME = "bench"
HELP = "measure startup, model load, time to first token, tokens/s, detector, UI, search and memory figures"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true",
                   help="smaller workloads (10,000 messages for search, shorter replies): a smoke run")
    p.add_argument("--skip", default="", metavar="NAMES",
                   help="comma-separated parts to leave out: startup, ui, detectors, model, fts, open")


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "n/a"
    return f"{v}{unit}"


def run(args: argparse.Namespace) -> int:
    from waluigi_desk.core.bench import SKIPPABLE, run_bench
    from waluigi_desk.errors import KnownError

    from waluigi_desk.core.models import resolve_model

    settings = make_settings(None, args)  # --model, --n-ctx, --gpu-layers, --threads apply
    resolve_model(settings.get("model_path") or None)  # a bad --model: one clear error, exit 1
    progress = (lambda msg: None) if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - SKIPPABLE
    if unknown:
        raise KnownError(f"bench --skip: unknown part(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(sorted(SKIPPABLE))}.")
    out = run_bench(settings, quick=args.quick, progress=progress, skip=skip)
    if args.json:
        print_json(out)
        return 0
    rows = [
        ("startup to window", _fmt(out.get("startup_to_window_s"), " s")),
        ("model load", _fmt(out.get("model_load_s"), " s")),
        ("time to first token, turn 1", _fmt(out.get("ttft_s_turn1"), " s")),
        ("time to first token, turn 10", _fmt(out.get("ttft_s_turn10"), " s")),
        ("tokens/s through the app", _fmt(out.get("tokens_per_s_app"))),
        ("tokens/s plain llama-cpp-python", _fmt(out.get("tokens_per_s_raw"))),
        ("overhead ratio (raw / app)", _fmt(out.get("overhead_ratio"))),
        ("detector p50 / p95", f"{_fmt(out.get('detector_ms_p50'), ' ms')} / {_fmt(out.get('detector_ms_p95'), ' ms')}"),
        ("UI longest stall", _fmt(out.get("ui_max_stall_ms"), " ms")),
        (f"search over {out.get('fts_messages', '?')} messages", _fmt(out.get("fts_search_ms"), " ms")),
        ("open a 10,000-message conversation", _fmt(out.get("open_conversation_ms"), " ms")),
        ("peak memory", _fmt(out.get("peak_rss_mb"), " MB")),
    ]
    print(f"Waluigi Desk bench on {out.get('model', '?')} ({out.get('device', '?')})")
    for k, v in rows:
        print(f"  {k:<40} {v}")
    print("targets:")
    for name, t in out["targets"].items():
        mark = {True: "pass", False: "FAIL", None: "n/a "}[t["pass"]]
        print(f"  {mark}  {name} = {_fmt(t['value'])} (target {t['target']})")
    for k, v in out.get("notes", {}).items():
        print(f"note: {k}: {v}")
    return 0


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# the UI probe: runs in its own process (python -m waluigi_desk.commands.bench --ui-probe)
# ---------------------------------------------------------------------------------------------
def _ui_probe(argv: list[str]) -> int:  # pragma: no cover - exercised through the bench command
    """Open the window, wait for the model and the detectors, send one message and time a
    10 ms QTimer heartbeat from the send until the reply's verdict arrives. Prints one line
    ``UI_PROBE {json}``. Qt is imported only here (core never imports it)."""
    from waluigi_desk.cli import build_parser
    from waluigi_desk.core.bench import STREAM_PROMPT

    args = build_parser().parse_args([a for a in argv if a != "--ui-probe"])
    from PySide6.QtCore import QTimer

    from waluigi_desk.ui import app as ui_app

    app, window = ui_app.create_app(args, install_hooks=False)
    window.show()
    st: dict = {"model": False, "detectors": False, "sent": 0.0, "reply": None, "end": 0.0,
                "gaps": [], "last": 0.0, "detector_state": None, "note": None}

    def beat() -> None:
        now = time.perf_counter()
        if st["sent"] and not st["end"]:
            st["gaps"].append((now - st["last"]) * 1000)
        st["last"] = now

    def finish(note: str | None = None) -> None:
        if not st["end"]:
            st["end"] = time.perf_counter()
            st["note"] = note
            QTimer.singleShot(50, app.quit)

    def maybe_send() -> None:
        if st["model"] and st["detectors"] and not st["sent"]:
            st["sent"] = st["last"] = time.perf_counter()
            window.send(STREAM_PROMPT, None)

    def loaded(_info) -> None:
        st["model"] = True
        maybe_send()

    def det_state(state: str, _msg: str) -> None:
        st["detector_state"] = state
        if state in ("ready", "unavailable"):
            st["detectors"] = True
            maybe_send()

    def reply_finished(d: dict) -> None:
        st["reply"] = d
        if d.get("error"):
            finish(f"the reply failed: {d.get('error')}")
        elif st["detector_state"] == "unavailable":
            finish("detectors unavailable: streaming only")

    def verdict(_cid: int, mid: int, _v: dict) -> None:
        if st["reply"] is not None and mid == st["reply"].get("reply_message_id"):
            finish()

    window.model_loaded.connect(loaded)
    window.detector_worker.state.connect(det_state)
    window.reply_finished.connect(reply_finished)
    window.verdict_received.connect(verdict)
    window.engine_worker.load_failed.connect(lambda msg, _k: finish(f"model failed to load: {msg}"))
    hb = QTimer()
    hb.setInterval(10)
    hb.timeout.connect(beat)
    hb.start()
    QTimer.singleShot(240_000, lambda: finish("timed out after 240 s"))
    app.exec()
    hb.stop()
    gaps = st["gaps"]
    r = st["reply"] or {}
    print("UI_PROBE " + json.dumps({
        "max_stall_ms": round(max(gaps), 2) if gaps else None,
        "p99_gap_ms": round(sorted(gaps)[int(len(gaps) * 0.99)], 2) if gaps else None,
        "beats": len(gaps), "seconds": round(st["end"] - st["sent"], 2) if st["sent"] else None,
        "reply_chars": len(r.get("text") or ""), "note": st["note"]}), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    if "--ui-probe" in sys.argv:
        sys.exit(_ui_probe(sys.argv[1:]))
