"""Entry point of the frozen (PyInstaller) build: ``waluigi_desk.cli:main``.

Before the app is imported this script:
- gives the process a stdout/stderr when it has none. A windowed build (``console=False`` on
  Windows and macOS, or any program started with its standard streams closed) gets
  ``sys.stdout is None`` and no descriptors 1 and 2; llama-cpp-python's ``verbose=False``
  ``os.dup()``s descriptors 1 and 2 to silence llama.cpp, and whatever file happens to get
  descriptor 1 next (a database, an archive) would be clobbered. Both go to the null device.
- switches the Hugging Face libraries to offline mode: the embedding model ships inside the
  bundle and nothing may be downloaded at run time (a user can still override the variables).
- calls ``multiprocessing.freeze_support()`` (torch and joblib may start helper processes).
"""

from __future__ import annotations

import os
import sys


def _ensure_std_streams() -> None:
    # llama-cpp-python (0.3.36) silences llama.cpp by dup()-ing the raw descriptors 1 and 2, so
    # they must be open: a closed one gets the null device. A stream Python could not set up
    # (sys.stdout is None) writes to the null device too.
    for fd, name in ((1, "stdout"), (2, "stderr")):
        reserved = False
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            reserved = True
        stream = getattr(sys, name)
        usable = stream is not None
        if usable:
            try:
                stream.fileno()
            except (AttributeError, OSError, ValueError):
                usable = False
        if not usable:
            target = fd if reserved else os.devnull
            setattr(sys, name, open(target, "w", encoding="utf-8", errors="replace", closefd=not reserved))  # noqa: SIM115
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115


def main() -> int:
    _ensure_std_streams()
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    import multiprocessing

    multiprocessing.freeze_support()

    from waluigi_desk.cli import main as cli_main

    return int(cli_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
