"""GGUF discovery and validation: every bad model file gets one clear sentence naming the file."""

from __future__ import annotations

import os

import pytest

from tests.helpers import gguf
from waluigi_desk.core import models
from waluigi_desk.core.models import ModelInfo, discover_models, read_gguf_header, resolve_model
from waluigi_desk.errors import ModelError


def one_sentence(msg: str, name: str) -> None:
    assert name in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.rstrip().endswith("."), msg


def test_default_model_header(default_model_path):
    info = read_gguf_header(default_model_path)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.context_length == 8192
    assert info.gguf_version == 3
    assert info.tensor_count > 100
    assert info.has_chat_template
    assert info.size_bytes == os.path.getsize(default_model_path)
    assert set(info.to_json()) >= {"path", "name", "size_bytes", "architecture", "quantization",
                                   "context_length", "source"}
    assert "metadata" not in info.to_json()


def test_minimal_written_gguf_is_read_back(tmp_path):
    p = gguf.write(tmp_path / "tiny.gguf", gguf.minimal_gguf("qwen2"))
    info = read_gguf_header(p)
    assert (info.architecture, info.name, info.context_length, info.quantization) == \
        ("qwen2", "tiny test model", 128, "F32")
    assert not info.has_chat_template


def _bad_cases(tmp_path, default_model_path):
    real = default_model_path.read_bytes()
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    return {
        "missing": tmp_path / "nope.gguf",
        "directory": folder,
        "not_gguf": gguf.write(tmp_path / "notes.gguf", b"this is a text file, not a model\n" * 20),
        "zero_bytes": gguf.write(tmp_path / "empty.gguf", b""),
        "truncated_header": gguf.write(tmp_path / "cut-header.gguf", real[:5000]),
        "truncated_data": gguf.write(tmp_path / "cut-data.gguf", real[: len(real) // 3]),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "not_gguf", "zero_bytes",
                                  "truncated_header", "truncated_data"])
def test_bad_model_files_one_clear_sentence(tmp_path, default_model_path, case):
    p = _bad_cases(tmp_path, default_model_path)[case]
    with pytest.raises(ModelError) as ei:
        read_gguf_header(p)
    one_sentence(ei.value.message, p.name)
    expected = {"missing": "does not exist", "directory": "folder", "not_gguf": "not a GGUF",
                "zero_bytes": "empty", "truncated_header": "truncated", "truncated_data": "truncated"}[case]
    assert expected in ei.value.message
    # the same through the engine constructor (what --model uses)
    from waluigi_desk.core.engine.llama import LlamaEngine

    with pytest.raises(ModelError) as ei2:
        LlamaEngine(str(p))
    assert ei2.value.message == ei.value.message


def test_unsupported_architecture_named(tmp_path):
    from waluigi_desk.core.engine.llama import LlamaEngine

    p = gguf.write(tmp_path / "alien.gguf", gguf.minimal_gguf("frobnicator9000"))
    e = LlamaEngine(str(p))  # the header itself is fine
    with pytest.raises(ModelError) as ei:
        e.load()
    one_sentence(ei.value.message, "alien.gguf")
    assert "frobnicator9000" in ei.value.message and "not support" in ei.value.message


def test_embedding_architecture_is_not_a_chat_model(tmp_path):
    from waluigi_desk.core.engine.llama import LlamaEngine

    p = gguf.write(tmp_path / "embed.gguf", gguf.minimal_gguf("bert"))
    with pytest.raises(ModelError, match="not a chat model"):
        LlamaEngine(str(p)).load()


def test_header_without_architecture(tmp_path):
    p = gguf.write(tmp_path / "noarch.gguf", gguf.minimal_gguf(with_arch=False))
    with pytest.raises(ModelError, match="architecture") as ei:
        read_gguf_header(p)
    one_sentence(ei.value.message, "noarch.gguf")


def test_unsupported_gguf_version(tmp_path):
    p = gguf.write(tmp_path / "v9.gguf", gguf.minimal_gguf(version=9))
    with pytest.raises(ModelError, match="version 9"):
        read_gguf_header(p)


def test_discovery_finds_default_and_user_models_and_skips_broken(temp_home, default_model_path):
    user = temp_home / "models"
    user.mkdir(exist_ok=True)
    gguf.write(user / "tiny.gguf", gguf.minimal_gguf("qwen2"))
    gguf.write(user / "broken.gguf", b"GGUF\x03\x00")
    found = discover_models()
    by_src = {m.source: m for m in found}
    assert by_src["default"].path == str(default_model_path.resolve())
    assert by_src["user"].architecture == "qwen2"
    assert not any(m.path.endswith("broken.gguf") for m in found)


def test_repo_models_folder_is_in_the_layout_and_scanned(monkeypatch, tmp_path, temp_home):
    """``models/`` at the top of the checkout exists (README inside, weights git-ignored) and a
    GGUF put there is listed with source "repo"; a subfolder is scanned too."""
    from waluigi_desk import paths

    repo = paths.repo_models_dir()
    assert repo.is_dir() and (repo / "README.md").is_file()
    fake = tmp_path / "models"
    (fake / "sub").mkdir(parents=True)
    gguf.write(fake / "sub" / "extra.gguf", gguf.minimal_gguf("llama"))
    monkeypatch.setattr(paths, "repo_models_dir", lambda: fake)
    found = [m for m in discover_models() if m.source == "repo"]
    assert [os.path.basename(m.path) for m in found] == ["extra.gguf"]
    assert found[0].architecture == "llama"


def test_resolve_model_default_and_explicit(tmp_path, default_model_path):
    assert resolve_model(None).source == "default"
    p = gguf.write(tmp_path / "x.gguf", gguf.minimal_gguf())
    info = resolve_model(str(p))
    assert isinstance(info, ModelInfo) and info.source == "file"


def test_no_default_model_message(monkeypatch):
    monkeypatch.setattr(models, "default_model_path", lambda: None)
    monkeypatch.setattr(models, "discover_models", lambda: [])
    with pytest.raises(ModelError, match="No model found"):
        resolve_model(None)


def test_human_size():
    assert models.human_size(512) == "512 B"
    assert models.human_size(98362432) == "93.8 MB"
