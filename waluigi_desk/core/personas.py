"""Personas (named system prompts) and the persona lint.

A persona is a name and a system prompt; each conversation has one (``conversations.persona``
holds its name and ``system_prompt`` a copy of its text, so editing a persona later never
rewrites old conversations). A few presets ship with the app; user personas live in the
``personas`` setting (a JSON list), so they travel with the database.

The lint follows the Waluigi Effect write-up: a prompt built from prohibitions ("never mention
X", "do not discuss Y") makes the forbidden behaviour salient and defines the exact opposite
character the model can collapse into; absurd flattery ("9000 IQ", "perfectly omniscient")
describes a character that does not exist, so the model is pushed towards the more plausible
story that the persona is a pretence. The lint explains this and suggests a positive phrasing.
It is a heuristic, never blocks saving, and says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from waluigi_desk.core.settings import DEFAULT_SYSTEM_PROMPT, SCHEMA, Setting, register

SETTING = "personas"
if SETTING not in SCHEMA:
    register(Setting(SETTING, str, "[]", "Your personas (a JSON list of {name, system_prompt}).",
                     group="Personas"))


@dataclass(frozen=True)
class Persona:
    name: str
    system_prompt: str
    preset: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: tuple[Persona, ...] = (
    Persona("Assistant", DEFAULT_SYSTEM_PROMPT, True),
    Persona("Concise", "You are a helpful assistant. Answer briefly and plainly; use a short list "
            "when it helps.", True),
    Persona("Coding helper", "You are a careful programming assistant. Explain your reasoning "
            "briefly, show complete code in fenced blocks, and point out edge cases.", True),
    Persona("Writing coach", "You help people improve their writing. Suggest concrete edits, "
            "explain why each one helps, and keep the author's voice.", True),
    Persona("Tutor", "You are a patient tutor. Ask what the learner already knows, explain step "
            "by step with small examples, and check understanding.", True),
)


def _user_personas(settings: Any) -> list[Persona]:
    raw = settings.get(SETTING) if settings is not None else "[]"
    try:
        items = json.loads(raw or "[]")
    except json.JSONDecodeError:
        return []
    out = []
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict) and str(it.get("name", "")).strip():
            out.append(Persona(str(it["name"]).strip(), str(it.get("system_prompt", ""))))
    return out


def all_personas(settings: Any) -> list[Persona]:
    """Presets first, then the user's (a user persona with a preset's name replaces it)."""
    users = _user_personas(settings)
    names = {p.name for p in users}
    return [p for p in PRESETS if p.name not in names] + users


def find(settings: Any, name: str) -> Persona | None:
    return next((p for p in all_personas(settings) if p.name == name), None)


def save_persona(settings: Any, name: str, system_prompt: str) -> Persona:
    name = " ".join(name.split())
    if not name:
        raise ValueError("A persona needs a name.")
    users = [p for p in _user_personas(settings) if p.name != name]
    users.append(Persona(name, system_prompt))
    settings.set(SETTING, json.dumps([{"name": p.name, "system_prompt": p.system_prompt} for p in users]))
    return Persona(name, system_prompt)


def delete_persona(settings: Any, name: str) -> bool:
    users = _user_personas(settings)
    keep = [p for p in users if p.name != name]
    if len(keep) == len(users):
        return False
    settings.set(SETTING, json.dumps([{"name": p.name, "system_prompt": p.system_prompt} for p in keep]))
    return True


# ---------------------------------------------------------------------------------------------
# lint
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LintIssue:
    kind: str  # "prohibition" | "flattery"
    phrase: str  # the words that triggered it
    why: str
    suggestion: str


PROHIBITION_RE = re.compile(
    r"\b(?:never|do\s+not|don['’]t|must\s+not|mustn['’]t|should\s+not|shouldn['’]t|"
    r"under\s+no\s+circumstances|not\s+allowed\s+to|forbidden\s+to|refuse\s+to|avoid)\b"
    r"(?P<rest>[^.!?\n]{0,80})",
    re.IGNORECASE,
)
FLATTERY_RE = re.compile(
    r"\b(?:\d{3,}\s*iq|iq\s+of\s+\d{3,}|perfectly\s+(?:omniscient|infallible|accurate|correct)|"
    r"omniscient|all[- ]knowing|infallible|never\s+(?:makes?|made)\s+(?:a\s+)?mistakes?|"
    r"always\s+(?:right|correct)|smartest\s+(?:being|ai|entity|mind)|superintelligen\w*|"
    r"genius[- ]level|godlike|most\s+intelligent\s+(?:being|ai|entity)|knows\s+everything|"
    r"100\s*%\s+(?:accurate|correct))\b",
    re.IGNORECASE,
)

PROHIBITION_WHY = (
    "Prohibitions name the behaviour you do not want. To a language model that makes it more "
    "likely: every story with a rule also has the character who breaks it, and the prompt has "
    "just described that character (the Waluigi Effect)."
)
FLATTERY_WHY = (
    "Absurd flattery describes a character that cannot exist. The model finds it more plausible "
    "that such a persona is a pretence, and a pretence is exactly what can flip into its "
    "opposite; it also invites confident made-up answers."
)


def _positive(rest: str) -> str:
    topic = rest.strip(" ,;:").strip()
    topic = re.sub(r"^(?:ever\s+|to\s+|be\s+)", "", topic, flags=re.IGNORECASE)
    verb_topic = re.match(r"(?:discuss|talk about|mention|bring up|reveal|say|use)\s+(.+)", topic,
                          flags=re.IGNORECASE)
    if verb_topic:
        subject = verb_topic.group(1)
        return (f"Say what to do instead, e.g. \"Keep the conversation on <what you want>; if asked "
                f"about {subject}, briefly say it is outside what you help with and offer "
                "<an alternative>.\"")
    if topic:
        return (f"Describe the behaviour you want rather than forbidding \"{topic}\", e.g. \"Be "
                "<the opposite quality>: <one concrete example>.\"")
    return "Describe the behaviour you want, with a concrete example, instead of what to avoid."


def lint(system_prompt: str) -> list[LintIssue]:
    """Heuristic warnings for ``system_prompt`` (empty when none). Never blocks anything."""
    issues: list[LintIssue] = []
    text = system_prompt or ""
    for m in PROHIBITION_RE.finditer(text):
        phrase = m.group(0).strip()
        # "never makes mistakes" is flattery, not a prohibition
        if FLATTERY_RE.search(phrase):
            continue
        issues.append(LintIssue("prohibition", phrase, PROHIBITION_WHY, _positive(m.group("rest"))))
    for m in FLATTERY_RE.finditer(text):
        issues.append(LintIssue(
            "flattery", m.group(0).strip(), FLATTERY_WHY,
            "Describe real, checkable strengths instead, e.g. \"You are knowledgeable and careful; "
            "when you are not sure, say so.\""))
    return issues


def lint_text(system_prompt: str) -> str:
    """The lint as a short human text (for the persona editor and the command line)."""
    issues = lint(system_prompt)
    if not issues:
        return ""
    lines = ["This is a heuristic hint; you can save the persona as it is."]
    for i in issues:
        lines.append(f"• \"{i.phrase}\" ({i.kind}): {i.why} Suggestion: {i.suggestion}")
    return "\n".join(lines)
