"""The real app as a subprocess (offscreen): real default model, real detectors, real store.
``WALUIGI_DESK_AUTOPROMPT`` sends one prompt once the model and the detectors are loaded, waits
for the reply and its verdict, prints JSON and quits; ``WALUIGI_DESK_QUIT_AFTER_SHOW`` quits as
soon as the window is up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.proc import REPO

pytestmark = pytest.mark.slow


def run_app(home, env_extra, timeout=240):
    env = dict(os.environ)
    env.update({"QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONWARNINGS": "ignore", "WALUIGI_DESK_HOME": str(home)})
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "waluigi_desk", "--home", str(home)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def test_window_shows_and_quits(tmp_path):
    p = run_app(tmp_path / "h", {"WALUIGI_DESK_QUIT_AFTER_SHOW": "1"}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "window shown in" in p.stdout
    assert "propagateSizeHints" not in p.stderr


def test_real_app_replies_and_scores(tmp_path):
    home = tmp_path / "h"
    p = run_app(home, {"WALUIGI_DESK_AUTOPROMPT": "Say hello in one short sentence."})
    assert p.returncode == 0, p.stdout + p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]
    out = json.loads(line)
    assert out["ok"] is True and out["reply"].strip()
    v = out["verdict"]
    assert 0.0 <= v["score"] <= 1.0 and isinstance(v["flagged"], bool) and v["scored"] is True
    from waluigi_desk.core.detectors import registry

    assert {d["detector"] for d in v["per_detector"]} <= set(registry.names("reply"))
    assert "SmolLM2" in out["model"] or "Smollm2" in out["model"] or out["model"]
    # everything is in the store the app wrote
    from waluigi_desk.core.store import Store

    s = Store(home / "waluigi.db")
    try:
        msgs = s.messages(out["conversation_id"])
        assert [m.role for m in msgs] == ["user", "assistant"]
        assert msgs[0].content == "Say hello in one short sentence."
        assert msgs[1].content == out["reply"] and msgs[1].status == "complete"
        events = s.detector_events(out["conversation_id"], out["reply_message_id"])
        combined = [e for e in events if e["detector"] == "combined"]
        assert len(combined) == 1 and abs(combined[0]["score"] - v["score"]) < 1e-9
    finally:
        s.close()
