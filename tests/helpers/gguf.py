"""Write GGUF files for tests: valid minimal headers, hostile variants, and a copy of a real
model with one metadata string (the chat template) rewritten.

This is an independent little writer/parser (it does not use waluigi_desk.core.models), so the
tests check the app's parser against a second reading of the format:

    magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
    kv:      string key | u32 value type | value
    tensors: string name | u32 n_dims | u64 dims[n_dims] | u32 ggml type | u64 offset
    padding to general.alignment (default 32) | tensor data
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
        BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}
ALIGN = 32


def s(text: str | bytes) -> bytes:
    b = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def value(vtype: int, v: Any) -> bytes:
    if vtype in _FMT:
        return struct.pack(_FMT[vtype], v)
    if vtype == STRING:
        return s(v)
    if vtype == ARRAY:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(value(etype, i) for i in items)
    raise ValueError(vtype)


def kv(key: str, vtype: int, v: Any) -> bytes:
    return s(key) + struct.pack("<I", vtype) + value(vtype, v)


def header(version: int = 3, tensor_count: int = 1, kv_count: int = 0, magic: bytes = b"GGUF") -> bytes:
    return magic + struct.pack("<IQQ", version, tensor_count, kv_count)


def tensor_info(name: str = "token_embd.weight", dims: tuple[int, ...] = (8,), ggml_type: int = 0,
                offset: int = 0) -> bytes:
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


def minimal_gguf(arch: str = "llama", *, extra_kvs: list[bytes] | None = None, with_arch: bool = True,
                 version: int = 3) -> bytes:
    """A small, well-formed GGUF: a few metadata entries and one F32 tensor of 8 values."""
    kvs = []
    if with_arch:
        kvs.append(kv("general.architecture", STRING, arch))
    kvs += [kv("general.name", STRING, "tiny test model"), kv(f"{arch}.context_length", UINT32, 128),
            kv("general.file_type", UINT32, 0)]
    kvs += extra_kvs or []
    body = header(version, 1, len(kvs)) + b"".join(kvs) + tensor_info()
    body += b"\0" * (-len(body) % ALIGN)
    return body + struct.pack("<8f", *range(8))


def write(path: str | os.PathLike[str], data: bytes) -> Path:
    p = Path(path)
    p.write_bytes(data)
    return p


# ---------------------------------------------------------------------------------------------
# rewriting a real model
# ---------------------------------------------------------------------------------------------
def _read_value(f: BinaryIO, vtype: int) -> Any:
    if vtype in _FMT:
        fmt = _FMT[vtype]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if vtype == STRING:
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n)
    if vtype == ARRAY:
        etype, count = struct.unpack("<IQ", f.read(12))
        if etype in _FMT:
            f.seek(count * struct.calcsize(_FMT[etype]), os.SEEK_CUR)
            return None
        for _ in range(count):
            _read_value(f, etype)
        return None
    raise ValueError(f"unknown GGUF value type {vtype}")


def rewrite_string(src: str | os.PathLike[str], dst: str | os.PathLike[str], key: str, new: str) -> Path:
    """Copy the GGUF ``src`` to ``dst`` with the string value of ``key`` replaced by ``new``
    (tensor data re-aligned, so llama.cpp loads the copy as it loads the original)."""
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as f:
        assert f.read(4) == b"GGUF"
        version, n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        align = ALIGN
        val_start = val_end = None
        for _ in range(n_kv):
            (n,) = struct.unpack("<Q", f.read(8))
            k = f.read(n).decode()
            (vtype,) = struct.unpack("<I", f.read(4))
            start = f.tell()
            v = _read_value(f, vtype)
            if k == key:
                assert vtype == STRING, f"{key} is not a string"
                val_start, val_end = start, f.tell()
            if k == "general.alignment":
                align = int(v)
        assert val_start is not None, f"{key} not found in {src}"
        for _ in range(n_tensors):
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(n, os.SEEK_CUR)
            (nd,) = struct.unpack("<I", f.read(4))
            f.seek(8 * nd + 4 + 8, os.SEEK_CUR)
        header_end = f.tell()
        data_start = header_end + (-header_end % align)
        f.seek(0)
        head = f.read(header_end)
        new_head = head[:val_start] + s(new) + head[val_end:]
        with open(dst, "wb") as out:
            out.write(new_head)
            out.write(b"\0" * (-len(new_head) % align))
            f.seek(data_start)
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                out.write(chunk)
    return dst
