"""``waluigi-desk self-test``: prove an installation works: load the model, generate a few
tokens, open a store in a temporary folder, and (when the detectors are installed) score a reply."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import traceback

from waluigi_desk import __version__
from waluigi_desk.commands.common import make_settings, print_json
from waluigi_desk.errors import KnownError

NAME = "self-test"
HELP = "check the installation: model, generation, store (and detectors)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--skip-detectors", action="store_true", help="do not load the embedding model")


def _check(name: str, fn, report: dict) -> bool:
    t0 = time.perf_counter()
    try:
        detail = fn()
        report["checks"][name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 3), **(detail or {})}
        return True
    except KnownError as exc:
        report["checks"][name] = {"ok": False, "error": exc.message}
    except Exception as exc:  # noqa: BLE001 - a self-test reports everything
        report["checks"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                  "traceback": traceback.format_exc(limit=5)}
    return False


def run(args: argparse.Namespace) -> int:
    from waluigi_desk.core.engine import GenParams, create_engine
    from waluigi_desk.core.store import Store

    report: dict = {"version": __version__, "python": sys.version.split()[0], "checks": {}}
    with tempfile.TemporaryDirectory(prefix="waluigi-self-test-") as tmp:
        if getattr(args, "home", None) is None:
            os.environ["WALUIGI_DESK_HOME"] = tmp
        settings = make_settings(None, args)
        state: dict = {}

        def model():
            e = create_engine(settings)
            e.load()
            state["engine"] = e
            return {"model": e.info.model_name, "path": e.info.model_path, "device": e.info.device_text,
                    "gpu_offload": e.info.gpu_offload, "n_ctx": e.info.n_ctx}

        def generate():
            e = state["engine"]
            r = e.generate([{"role": "user", "content": "Say hi."}],
                           GenParams(temperature=0.0, max_tokens=8, seed=0), lambda p: None, threading.Event())
            if r.completion_tokens < 1:
                raise RuntimeError("the model generated no tokens")
            return {"reply": r.text, "tokens": r.completion_tokens, "tokens_per_s": round(r.tokens_per_s, 1)}

        def store():
            s = Store(os.path.join(tmp, "self-test.db"))
            cid = s.create_conversation("self-test")
            s.add_message(cid, "user", "hello")
            ok = s.integrity_check()
            s.close()
            if ok != "ok":
                raise RuntimeError(f"integrity check: {ok}")
            return {"integrity": ok}

        def detectors():
            from waluigi_desk.core.detectors.service import self_test as det_self_test

            return det_self_test()

        if _check("model", model, report):
            _check("generate", generate, report)
        _check("store", store, report)
        if not args.skip_detectors:
            try:
                import waluigi_desk.core.detectors.service  # noqa: F401
                have_detectors = True
            except ImportError:
                have_detectors = False
            if have_detectors:
                _check("detectors", detectors, report)
        if "engine" in state:
            state["engine"].close()
    report["ok"] = all(c["ok"] for c in report["checks"].values())
    if args.json:
        print_json(report)
    else:
        for name, c in report["checks"].items():
            line = "ok  " if c["ok"] else "FAIL"
            extra = c.get("error") or ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("ok", "traceback"))
            print(f"{line} {name}: {extra}")
        print("self-test passed" if report["ok"] else "self-test FAILED")
    return 0 if report["ok"] else 1
