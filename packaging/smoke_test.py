"""Smoke test of the built Linux artifacts: does the frozen app start on a machine with no Python?

    python packaging/smoke_test.py --tarball dist/waluigi-desk-*.tar.gz --deb dist/waluigi-desk_*.deb

For the tarball (unpacked into a temp dir) and for the .deb (unpacked into a scratch root with
``dpkg -x``), with a scrubbed environment (PATH = one empty folder, so no Python can mask a missing
module; no PYTHONPATH / PYTHONHOME / VIRTUAL_ENV / LD_LIBRARY_PATH; a temp HOME and --home;
``QT_QPA_PLATFORM=offscreen``; ``HF_HUB_OFFLINE=1``):

1. ``waluigi-desk self-test --json``, in a network namespace with no network (``unshare -n``, when
   run as root; from the .deb without HF_HUB_OFFLINE in the environment, which entry.py sets):
   must report ok, the model loaded from inside the bundle and
   generated tokens, the store opened, and (once ``waluigi_desk/core/detectors/service.py``
   exists in the source tree) the detectors scored a reply;
2. the self-test (model, generation, store; the detectors were checked in 1) with stdout and
   stderr closed (what a windowed build without a console gets): must exit 0, so ``print`` and
   llama-cpp-python's ``verbose=False`` survive it;
3. the window, offscreen, with ``WALUIGI_DESK_QUIT_AFTER_SHOW=1``: must print "window shown in"
   and exit 0 (required once ``waluigi_desk/ui/app.py`` knows that variable; before that the gap
   is reported, not failed).

The .deb's layout (binary, /usr/bin link, desktop entry, icons, AppStream metainfo, control
fields) is checked too, and the shipped ggml CPU library is checked for AVX-512 instructions
(``-DGGML_NATIVE=OFF``), when objdump is there. Artifact sizes are printed. Exit 0 = all passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = "waluigi-desk"

results: list[tuple[str, bool, str]] = []  # (check, passed, detail)


def record(check: str, ok: bool, detail: str = "") -> bool:
    results.append((check, ok, detail))
    print(f"  {'PASS' if ok else 'FAIL'}  {check}{': ' + detail if detail else ''}", flush=True)
    return ok


def note(check: str, detail: str) -> None:
    results.append((check, True, "NOTE " + detail))
    print(f"  NOTE  {check}: {detail}", flush=True)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def scrubbed_env(work: Path) -> dict[str, str]:
    empty_bin = work / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    home = work / "user-home"
    home.mkdir(exist_ok=True)
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    run = work / "xdg-runtime"
    run.mkdir(mode=0o700, exist_ok=True)
    env = {
        "PATH": str(empty_bin),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "XDG_RUNTIME_DIR": str(run),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    for exe in ("python", "python3", "python3.11"):
        assert shutil.which(exe, path=env["PATH"]) is None, f"{exe} is on the scrubbed PATH"
    return env


def no_network_prefix() -> list[str]:
    """``unshare -n --``: run in a new network namespace (loopback only, down) when we may."""
    unshare = shutil.which("unshare")
    if unshare and hasattr(os, "geteuid") and os.geteuid() == 0:
        if subprocess.run([unshare, "-n", "--", "true"], capture_output=True).returncode == 0:
            return [unshare, "-n", "--"]
    return []


def run_app(exe: Path, args: list[str], env: dict[str, str], timeout: float,
            close_std: bool = False, offline: bool = False) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    prefix = no_network_prefix() if offline else []
    kwargs: dict = {"env": env, "cwd": env["HOME"], "stdin": subprocess.DEVNULL}
    if close_std:
        def _close() -> None:  # runs in the child before exec: no stdout, no stderr at all
            os.close(1)
            os.close(2)
        kwargs["preexec_fn"] = _close
    else:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        p = subprocess.run([*prefix, str(exe), *args], timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return 124, out, err + f"\n[timed out after {timeout:.0f} s]", time.perf_counter() - t0
    return p.returncode, p.stdout or "", p.stderr or "", time.perf_counter() - t0


def parse_report(stdout: str) -> dict | None:
    try:
        return json.loads(stdout)
    except ValueError:
        start = stdout.find("{")
        if start < 0:
            return None
        try:
            return json.loads(stdout[start:])
        except ValueError:
            return None


def detectors_expected() -> bool:
    return (REPO / "waluigi_desk" / "core" / "detectors" / "service.py").is_file()


def window_expected() -> bool:
    app = REPO / "waluigi_desk" / "ui" / "app.py"
    return app.is_file() and "WALUIGI_DESK_QUIT_AFTER_SHOW" in app.read_text(encoding="utf-8", errors="replace")


def check_frozen_app(label: str, bundle: Path, work: Path, timeout: float, hf_offline_env: bool = True) -> None:
    exe = bundle / NAME
    if not record(f"{label}: executable present", exe.is_file() and os.access(exe, os.X_OK), str(exe)):
        return
    env = scrubbed_env(work)
    if not hf_offline_env:  # entry.py must switch the Hugging Face libraries offline by itself
        env.pop("HF_HUB_OFFLINE", None)
        env.pop("TRANSFORMERS_OFFLINE", None)

    # 1. self-test --json, with no network at all where a network namespace can be made
    data_home = work / "data-home"
    netns = bool(no_network_prefix())
    rc, out, err, secs = run_app(exe, ["self-test", "--json", "--home", str(data_home)], env, timeout, offline=True)
    how = ("in a network namespace with no network (unshare -n)" if netns else "network not cut off (needs root)") \
        + ("" if hf_offline_env else ", HF_HUB_OFFLINE not set")
    report = parse_report(out)
    if report is None:
        record(f"{label}: self-test --json", False,
               f"exit {rc} after {secs:.1f} s, no JSON; stderr tail:\n{err[-3000:]}\nstdout tail:\n{out[-1500:]}")
        return
    checks = report.get("checks", {})
    record(f"{label}: self-test ok (exit {rc}, {secs:.1f} s, {how})", rc == 0 and report.get("ok") is True,
           "" if report.get("ok") else json.dumps(checks, indent=1)[-3000:])
    m = checks.get("model", {})
    model_path = str(m.get("path", ""))
    inside = os.path.realpath(model_path).startswith(os.path.realpath(bundle) + os.sep)
    record(f"{label}: model loaded from inside the bundle", bool(m.get("ok")) and inside,
           f"{m.get('model')} ({m.get('device')}), {m.get('seconds')} s, path {model_path}")
    g = checks.get("generate", {})
    record(f"{label}: model generated", bool(g.get("ok")) and int(g.get("tokens") or 0) >= 1,
           f"{g.get('tokens')} tokens, {g.get('tokens_per_s')} tok/s, reply {g.get('reply')!r}")
    s = checks.get("store", {})
    record(f"{label}: store opened (SQLite integrity {s.get('integrity')})", bool(s.get("ok")))
    if detectors_expected():
        d = checks.get("detectors")
        record(f"{label}: detectors loaded and scored a reply", bool(d and d.get("ok")),
               json.dumps({k: v for k, v in (d or {}).items() if k != "traceback"})[:400]
               if d else "no 'detectors' check in the report")
        record(f"{label}: embedding model runs on the bundled int8 ONNX export",
               bool(d) and d.get("backend") == "onnx-int8", f"backend {d.get('backend') if d else None!r} "
               f"{d.get('backend_note', '') if d else ''}")
    else:
        note(f"{label}: detectors", "waluigi_desk/core/detectors/service.py not in the source tree yet; "
             "the frozen self-test had no detector check to run")

    # 2. no console: stdout and stderr closed
    rc2, _out, _err, secs2 = run_app(exe, ["self-test", "--skip-detectors", "--home", str(work / "data-home-noconsole")],
                                     env, timeout, close_std=True)
    record(f"{label}: self-test with stdout/stderr closed (windowed build) exits 0", rc2 == 0,
           f"exit {rc2}, {secs2:.1f} s")

    # 3. the window, offscreen
    wenv = dict(env, WALUIGI_DESK_QUIT_AFTER_SHOW="1")
    rc3, out3, err3, secs3 = run_app(exe, ["--home", str(work / "data-home-window")], wenv, timeout)
    both = out3 + err3
    shown = next((ln.strip() for ln in both.splitlines() if "window shown in" in ln), None)
    if shown and rc3 == 0:
        record(f"{label}: window starts offscreen", True, f"{shown!r} (process {secs3:.1f} s)")
    elif window_expected():
        record(f"{label}: window starts offscreen", False, f"exit {rc3} after {secs3:.1f} s; output tail:\n{both[-3000:]}")
    else:
        note(f"{label}: window", f"GAP: waluigi_desk/ui/app.py does not handle WALUIGI_DESK_QUIT_AFTER_SHOW "
             f"yet; the frozen window was not checked (exit {rc3}; tail: {both.strip()[-300:]!r})")


def check_avx512(bundle: Path) -> None:
    objdump = shutil.which("objdump")
    libs, seen = [], set()  # the same library may be there under two names (.so, .so.0)
    for lib in sorted((bundle / "_internal" / "llama_cpp" / "lib").glob("libggml-cpu*.so*")):
        key = (lib.stat().st_size, lib.read_bytes()[-4096:])
        if key not in seen:
            seen.add(key)
            libs.append(lib)
    if not objdump or not libs:
        note("ggml built without AVX-512", "objdump or libggml-cpu not found; not checked")
        return
    hits = 0
    for lib in libs:
        p = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True)
        hits += sum(1 for ln in p.stdout.splitlines() if "%zmm" in ln)
    record("ggml CPU library has no AVX-512 instructions (-DGGML_NATIVE=OFF)", hits == 0,
           f"{hits} instructions on zmm registers in {', '.join(x.name for x in libs)}")


def check_deb_layout(deb: Path, root: Path) -> None:
    info = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True)
    fields = dict(ln.split(": ", 1) for ln in info.stdout.splitlines() if ": " in ln and not ln.startswith(" "))
    record(".deb control fields", info.returncode == 0 and fields.get("Package") == NAME,
           f"Package {fields.get('Package')}, Version {fields.get('Version')}, "
           f"Architecture {fields.get('Architecture')}, Installed-Size {fields.get('Installed-Size')} KB")
    link = root / "usr" / "bin" / NAME
    target = os.readlink(link) if link.is_symlink() else ""
    record(".deb /usr/bin/waluigi-desk -> /opt/waluigi-desk/waluigi-desk",
           target == f"/opt/{NAME}/{NAME}" and (root / target.lstrip("/")).is_file(), target)
    desktop = root / "usr" / "share" / "applications" / f"{NAME}.desktop"
    text = desktop.read_text() if desktop.is_file() else ""
    record(".deb desktop entry", "Exec=waluigi-desk" in text and "Icon=waluigi-desk" in text, str(desktop.name))
    icons = [root / "usr/share/icons/hicolor/scalable/apps" / f"{NAME}.svg",
             root / "usr/share/icons/hicolor/256x256/apps" / f"{NAME}.png"]
    record(".deb icons (SVG + 256 px PNG)", all(p.is_file() for p in icons))
    meta = root / "usr/share/metainfo/io.github.waluigi_desk.metainfo.xml"
    ok = meta.is_file() and "@VERSION@" not in meta.read_text()
    detail = ""
    if ok and shutil.which("appstreamcli"):
        p = subprocess.run(["appstreamcli", "validate", "--no-net", str(meta)], capture_output=True, text=True)
        ok, detail = p.returncode == 0, "appstreamcli validate: " + (p.stdout.strip().splitlines() or ["?"])[-1]
    record(".deb AppStream metainfo", ok, detail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tarball", type=Path, help="dist/waluigi-desk-*.tar.gz")
    ap.add_argument("--deb", type=Path, help="dist/waluigi-desk_*.deb")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per app run (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args(argv)
    if not args.tarball and not args.deb:
        ap.error("give --tarball and/or --deb")
    for p in (args.tarball, args.deb):
        if p is not None and not p.is_file():
            ap.error(f"{p} does not exist: build it first (make package)")

    work = Path(tempfile.mkdtemp(prefix="waluigi-smoke-"))
    t_all = time.perf_counter()
    try:
        sizes: list[tuple[str, int]] = []
        if args.tarball:
            print(f"tarball {args.tarball}", flush=True)
            dest = work / "tar"
            dest.mkdir()
            t0 = time.perf_counter()
            with tarfile.open(args.tarball) as tf:
                tf.extractall(dest, filter="data")
            bundle = dest / NAME
            sizes += [(args.tarball.name, args.tarball.stat().st_size), ("unpacked one-folder build", tree_size(bundle))]
            record("tarball unpacks", bundle.is_dir(), f"{time.perf_counter() - t0:.1f} s")
            check_avx512(bundle)
            (work / "run-tar").mkdir()
            check_frozen_app("tarball", bundle, work / "run-tar", args.timeout)
            shutil.rmtree(dest, ignore_errors=True)
        if args.deb:
            print(f"deb {args.deb}", flush=True)
            root = work / "deb-root"
            t0 = time.perf_counter()
            p = subprocess.run(["dpkg", "-x", str(args.deb), str(root)], capture_output=True, text=True)
            record("dpkg -x into a scratch root", p.returncode == 0, p.stderr.strip()[-500:] or f"{time.perf_counter() - t0:.1f} s")
            sizes.append((args.deb.name, args.deb.stat().st_size))
            if p.returncode == 0:
                check_deb_layout(args.deb, root)
                (work / "run-deb").mkdir()
                check_frozen_app("deb", root / "opt" / NAME, work / "run-deb", args.timeout, hf_offline_env=False)
        print("\nartifact sizes:")
        for name, size in sizes:
            print(f"  {name:<50} {human(size)} ({size:,} bytes)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if not r[1]]
    notes = [r for r in results if r[2].startswith("NOTE")]
    print(f"\n{len(notes)} notes (gaps, not failures); {time.perf_counter() - t_all:.0f} s in all")
    print(f"smoke-test: {len(results) - len(failed) - len(notes)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
