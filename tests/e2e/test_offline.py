"""Offline (issue 5): the app opens no network connection during start, chat and detection.

Each command runs as a child process with a ``sitecustomize.py`` on PYTHONPATH that installs an
audit hook recording every non-AF_UNIX ``socket.connect`` (and every DNS lookup) to a file. The
HF / transformers offline variables are removed from the child's environment, so the app itself
must stay off the network."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.helpers.proc import REPO

pytestmark = pytest.mark.slow

SITECUSTOMIZE = r'''
import json, os, socket, sys

_LOG = os.environ["NET_AUDIT_LOG"]

def _hook(event, args):
    if event == "socket.connect":
        sock, addr = args[0], args[1]
        if getattr(sock, "family", None) == socket.AF_UNIX:
            return
        rec = {"event": event, "address": repr(addr)}
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        rec = {"event": event, "address": repr(args[:2])}
    else:
        return
    with open(_LOG, "a") as f:
        f.write(json.dumps(rec) + "\n")

sys.addaudithook(_hook)
'''


@pytest.fixture
def audited(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "net.log"

    def run(args, stdin=None, extra_env=None, timeout=180):
        env = {k: v for k, v in os.environ.items()
               if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
        env.update({"PYTHONPATH": str(site), "NET_AUDIT_LOG": str(log), "PYTHONWARNINGS": "ignore"})
        env.update(extra_env or {})
        p = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=REPO)
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return p, events

    return run


def test_audit_hook_sees_a_real_connection(audited):
    """The probe itself works: a TCP connect in the child is recorded."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        p, events = audited(["-c", f"import socket; socket.create_connection(('127.0.0.1', {port})).close()"])
    finally:
        srv.close()
    assert p.returncode == 0, p.stderr
    assert any(e["event"] == "socket.connect" and str(port) in e["address"] for e in events)


def test_no_network_during_ask_chat_and_self_test(audited, tmp_path):
    home = str(tmp_path / "home")
    p, events = audited(["-m", "waluigi_desk", "ask", "Hello", "--json", "--max-tokens", "8", "--home", home])
    assert p.returncode == 0, p.stderr
    assert events == [], events
    p, events = audited(["-m", "waluigi_desk", "chat", "--max-tokens", "8", "--home", home],
                        stdin="Hi there\nHow are you?\n")
    assert p.returncode == 0, p.stderr
    assert events == [], events
    # self-test loads the detectors (the embedding model) when they exist: detection offline too
    p, events = audited(["-m", "waluigi_desk", "self-test", "--json", "--home", home], timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert events == [], events


def test_no_network_when_the_window_starts(audited, tmp_path):
    if importlib.util.find_spec("waluigi_desk.ui.app") is None:
        pytest.skip("waluigi_desk/ui/app.py is not built yet")
    p, events = audited(["-m", "waluigi_desk", "--home", str(tmp_path / "h")],
                        extra_env={"WALUIGI_DESK_QUIT_AFTER_SHOW": "1", "QT_QPA_PLATFORM": "offscreen"})
    assert p.returncode == 0, p.stderr
    assert events == [], events
