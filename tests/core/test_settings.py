"""The typed settings schema, stored in the real store."""

from __future__ import annotations

import json

import pytest

from waluigi_desk.core.settings import SCHEMA, Settings, coerce_gpu_layers


def test_defaults_and_schema_complete():
    s = Settings()
    assert s.get("n_ctx") == 4096 and s.get("gpu_layers") == "auto" and s.get("seed") == -1
    for spec in SCHEMA.values():
        assert spec.description and spec.coerce(spec.default) == spec.default


@pytest.mark.parametrize("name,value,expected", [
    ("temperature", "0.5", 0.5), ("max_tokens", "128", 128), ("flash_attn", "off", False),
    ("flash_attn", "yes", True), ("gpu_layers", "auto", "auto"), ("gpu_layers", "12", 12),
    ("gpu_layers", -1, -1), ("theme", "dark", "dark")])
def test_coerce_ok(name, value, expected):
    assert SCHEMA[name].coerce(value) == expected


@pytest.mark.parametrize("name,value,words", [
    ("temperature", "hot", "not a valid float"), ("temperature", 5, "above the maximum"),
    ("max_tokens", 0, "below the minimum"), ("max_tokens", 1.5, "not a valid int"),
    ("theme", "purple", "not one of"), ("flash_attn", "maybe", "not a valid bool"),
    ("gpu_layers", "lots", "'auto' or a whole number"), ("gpu_layers", -5, "must be")])
def test_coerce_bad_values_are_explained(name, value, words):
    with pytest.raises(ValueError) as ei:
        SCHEMA[name].coerce(value)
    assert name in str(ei.value) and words in str(ei.value)
    assert coerce_gpu_layers(" AUTO ") == "auto"


def test_set_persists_notifies_and_survives_reopen(store):
    s = Settings(store)
    changed = []
    s.on_change(changed.append)
    s.set("temperature", 0.2)
    s.set("temperature", 0.2)  # same value: no second notice
    s.set("theme", "light")
    assert changed == ["temperature", "theme"]
    assert Settings(store).get("temperature") == 0.2


def test_override_is_not_stored(store):
    s = Settings(store)
    s.override("max_tokens", 7)
    assert s.get("max_tokens") == 7
    assert Settings(store).get("max_tokens") == 512


def test_bad_or_unknown_stored_values_fall_back(store):
    store.save_setting("temperature", json.dumps("very hot"))
    store.save_setting("from_the_future", json.dumps(1))
    store.save_setting("n_ctx", "{not json")
    s = Settings(store)
    assert s.get("temperature") == 0.7 and s.get("n_ctx") == 4096
    with pytest.raises(KeyError, match="unknown setting"):
        s.get("from_the_future")
    with pytest.raises(KeyError):
        s.set("nope", 1)
    assert set(s.as_dict()) == set(SCHEMA)
