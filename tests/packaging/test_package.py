"""The installers, built and smoke-tested (skipped unless ``CI_PACKAGE=1``: the build takes 10-30
minutes). ``CI_PACKAGE=1 .venv/bin/pytest tests/packaging`` builds the artifacts when dist/ has
none (``packaging/build_linux.sh``, the same as ``make package``), then runs
``packaging/smoke_test.py`` on the newest tarball and .deb: the frozen app's self-test (model,
generation, store, detectors) from both, with no Python on the PATH, without a console, and its
window offscreen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_build = pytest.mark.skipif(os.environ.get("CI_PACKAGE") != "1", reason="installer build: set CI_PACKAGE=1")


def _newest(pattern: str) -> Path | None:
    found = sorted((REPO / "dist").glob(pattern), key=lambda p: p.stat().st_mtime)
    found = [p for p in found if "-cuda" not in p.name]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def artifacts() -> tuple[Path, Path]:
    tarball, deb = _newest("waluigi-desk-*-linux-*.tar.gz"), _newest("waluigi-desk_*.deb")
    if tarball is None or deb is None:
        env = dict(os.environ, WALUIGI_PKG_SKIP_SMOKE="1")  # the test below runs it
        subprocess.run(["bash", str(REPO / "packaging" / "build_linux.sh")], cwd=REPO, env=env, check=True)
        tarball, deb = _newest("waluigi-desk-*-linux-*.tar.gz"), _newest("waluigi-desk_*.deb")
    assert tarball and deb, "packaging/build_linux.sh made no artifacts in dist/"
    return tarball, deb


@needs_build
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_frozen_app_passes_the_smoke_test(artifacts):
    tarball, deb = artifacts
    p = subprocess.run([sys.executable, str(REPO / "packaging" / "smoke_test.py"),
                        "--tarball", str(tarball), "--deb", str(deb)],
                       cwd=REPO, capture_output=True, text=True)
    print(p.stdout[-20000:])
    assert p.returncode == 0, p.stdout[-8000:] + p.stderr[-4000:]


def test_spec_and_recipes_exist():
    """Cheap, always run: every recipe the README names is there."""
    for rel in ("packaging/waluigi-desk.spec", "packaging/entry.py", "packaging/build_linux.sh",
                "packaging/windows/waluigi-desk.iss", "packaging/macos/build_macos.sh",
                "packaging/linux/waluigi-desk.desktop", "packaging/linux/io.github.waluigi_desk.metainfo.xml"):
        assert (REPO / rel).is_file(), rel


def test_entry_gives_a_windowed_build_usable_streams(monkeypatch):
    """A build without a console starts with sys.stdout/stderr None; entry.py must replace them
    with real files before llama-cpp-python's verbose=False calls sys.stdout.fileno()."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_waluigi_entry", REPO / "packaging" / "entry.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    entry._ensure_std_streams()
    try:
        for stream in (sys.stdout, sys.stderr):
            assert stream is not None and stream.fileno() >= 0
            print("goes nowhere", file=stream)
    finally:
        sys.stdout.close()
        sys.stderr.close()
