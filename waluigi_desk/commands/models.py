"""``waluigi-desk models``: the GGUF models found, read from their headers."""

from __future__ import annotations

import argparse

from waluigi_desk.commands.common import apply_home, print_json
from waluigi_desk.core.models import discover_models, read_gguf_header

NAME = "models"
HELP = "list the GGUF models found (default wheel, data folder, repo models/, --model)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    apply_home(args)
    models = discover_models()
    if getattr(args, "model", None):
        info = read_gguf_header(args.model)
        info.source = "file"
        models.insert(0, info)
    if args.json:
        print_json([m.to_json() for m in models])
        return 0
    if not models:
        print("No models found. Run `make run` to install the default one, or put .gguf files in "
              "the data folder's models/.")
        return 0
    for m in models:
        print(f"{m.name}  [{m.source}]")
        print(f"  {m.path}")
        print(f"  {m.size_text}, {m.quantization}, architecture {m.architecture}, "
              f"context {m.context_length or '?'} tokens, chat template: {'yes' if m.has_chat_template else 'no'}")
    return 0
