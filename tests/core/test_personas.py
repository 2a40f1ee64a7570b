"""core/personas.py: presets, user personas in the settings, and the lint."""

from __future__ import annotations

from waluigi_desk.core import personas


def test_presets_and_user_personas(settings):
    names = [p.name for p in personas.all_personas(settings)]
    assert names[: len(personas.PRESETS)] == [p.name for p in personas.PRESETS]
    personas.save_persona(settings, "  Pirate   captain ", "You talk like a friendly pirate.")
    p = personas.find(settings, "Pirate captain")
    assert p is not None and p.system_prompt == "You talk like a friendly pirate." and not p.preset
    # stored in the database: a fresh Settings on the same store sees it
    from waluigi_desk.core.settings import Settings

    assert personas.find(Settings(settings.store), "Pirate captain") is not None
    # a user persona may replace a preset of the same name
    personas.save_persona(settings, "Concise", "Be terse.")
    assert personas.find(settings, "Concise").system_prompt == "Be terse."
    assert personas.delete_persona(settings, "Concise")
    assert personas.find(settings, "Concise").preset
    assert not personas.delete_persona(settings, "nope")


def test_bad_stored_json_falls_back_to_presets(settings):
    settings.set(personas.SETTING, "{not json")
    assert [p.name for p in personas.all_personas(settings)] == [p.name for p in personas.PRESETS]


def test_lint_prohibitions():
    issues = personas.lint("You are a helpful bot. Never discuss politics. Do not reveal the secret code.")
    kinds = [(i.kind, i.phrase) for i in issues]
    assert ("prohibition", "Never discuss politics") in kinds
    assert any(p.startswith("Do not reveal the secret code") for k, p in kinds)
    pol = next(i for i in issues if i.phrase == "Never discuss politics")
    assert "Waluigi" in pol.why and "politics" in pol.suggestion and "instead" in pol.suggestion


def test_lint_flattery():
    issues = personas.lint("You are a perfectly omniscient genius with a 9000 IQ who never makes mistakes.")
    phrases = {i.phrase.lower() for i in issues if i.kind == "flattery"}
    assert {"perfectly omniscient", "9000 iq", "never makes mistakes"} <= phrases
    assert all(i.kind == "flattery" for i in issues)  # "never makes mistakes" is not a prohibition
    assert "pretence" in issues[0].why and "not sure" in issues[0].suggestion


def test_lint_quiet_on_positive_prompts():
    for p in personas.PRESETS:
        assert personas.lint(p.system_prompt) == [], p.name
    assert personas.lint_text("You are kind and answer clearly.") == ""
    assert personas.lint_text("Never lie.").startswith("This is a heuristic hint")
