"""Helpers the subcommands share: data folder, store, settings with command-line overrides,
and the engine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from waluigi_desk.core.settings import Settings
from waluigi_desk.core.store import Store, open_store


def apply_home(args: argparse.Namespace) -> None:
    if getattr(args, "home", None):
        from waluigi_desk.paths import set_home

        set_home(args.home)


def open_app_store(args: argparse.Namespace, *, quiet: bool = False) -> Store:
    apply_home(args)
    store, notice = open_store()
    if notice and not quiet:
        print(f"warning: {notice}", file=sys.stderr)
    return store


def make_settings(store: Store | None, args: argparse.Namespace) -> Settings:
    s = Settings(store)
    mapping = {
        "model": "model_path",
        "n_ctx": "n_ctx",
        "gpu_layers": "gpu_layers",
        "threads": "n_threads",
        "engine": "engine",
        "base_url": "base_url",
        "remote_model": "remote_model",
    }
    for arg, name in mapping.items():
        v = getattr(args, arg, None)
        if v is not None:
            try:
                s.override(name, v)
            except ValueError as exc:
                from waluigi_desk.errors import KnownError

                raise KnownError(str(exc)) from None
    return s


def load_engine(settings: Settings) -> Any:
    from waluigi_desk.core.engine import create_engine

    engine = create_engine(settings)
    engine.load()
    return engine


def reply_detector_names(arg: str | None) -> list[str] | None:
    """``--detectors a,b`` of ``eval`` and ``score``: the named reply detectors (None: the
    enabled ones); an unknown name is a clear error."""
    if not arg:
        return None
    from waluigi_desk.core.detectors import registry
    from waluigi_desk.errors import KnownError

    names = [n.strip() for n in arg.split(",") if n.strip()]
    known = registry.names("reply")
    bad = [n for n in names if n not in known]
    if bad:
        raise KnownError(f"unknown detector {', '.join(bad)}; reply detectors: {', '.join(known)}")
    return names


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
