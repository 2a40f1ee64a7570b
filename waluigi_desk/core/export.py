"""Export a conversation to Markdown (for people) and JSON (lossless), and import the JSON back.

The JSON holds everything the store has about the conversation: its fields, every message with
status, ``in_context``, token count, timestamps and meta, and its detector events with tester
feedback. Importing creates a new conversation (new ids) whose export equals the original's
except for ids; ``message_index`` ties each event to its message by position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from waluigi_desk.core.store import Store, safe_text
from waluigi_desk.errors import KnownError

FORMAT = "waluigi-desk-conversation"
VERSION = 1


class ImportFormatError(KnownError):
    pass


def to_dict(store: Store, conversation_id: int) -> dict[str, Any]:
    conv = store.get_conversation(conversation_id)
    msgs = store.messages(conversation_id)
    index = {m.id: i for i, m in enumerate(msgs)}
    events = []
    for e in store.detector_events(conversation_id):
        events.append({
            "message_index": index.get(e["message_id"]),
            "detector": e["detector"],
            "score": e["score"],
            "threshold": e["threshold"],
            "flagged": bool(e["flagged"]),
            "category": e["category"],
            "evidence": e["evidence"],
            "created_at": e["created_at"],
            "feedback": e.get("feedback"),
        })
    return {
        "format": FORMAT,
        "version": VERSION,
        "conversation": {
            "title": conv.title,
            "system_prompt": conv.system_prompt,
            "persona": conv.persona,
            "created_at": conv.created_at,
            "updated_at": conv.updated_at,
            "pinned": conv.pinned,
            "meta": conv.meta,
        },
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "created_at": m.created_at,
                "tokens": m.tokens,
                "status": m.status,
                "in_context": m.in_context,
                "meta": m.meta,
            }
            for m in msgs
        ],
        "detector_events": events,
    }


def to_json(store: Store, conversation_id: int) -> str:
    return json.dumps(to_dict(store, conversation_id), ensure_ascii=False, indent=2)


def to_markdown(store: Store, conversation_id: int) -> str:
    conv = store.get_conversation(conversation_id)
    flagged = {e["message_id"]: e for e in store.detector_events(conversation_id)
               if e["detector"] == "combined" and e["flagged"]}
    out = [f"# {conv.title}", ""]
    if conv.persona:
        out.append(f"*Persona: {conv.persona}*")
        out.append("")
    if conv.system_prompt:
        out += ["> **System:** " + conv.system_prompt.replace("\n", "\n> "), ""]
    for m in store.messages(conversation_id):
        who = {"user": "You", "assistant": "Assistant", "system": "System"}[m.role]
        notes = []
        if m.status != "complete":
            notes.append(m.status)
        if not m.in_context:
            notes.append("excluded from context")
        if m.id in flagged:
            cat = (flagged[m.id].get("category") or "misaligned").replace("_", " ")
            notes.append(f"flagged: {cat}")
        head = f"## {who}" + (f" ({', '.join(notes)})" if notes else "")
        out += [head, "", m.content, ""]
    return "\n".join(out).rstrip() + "\n"


def _req(d: Any, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ImportFormatError(f"The file is not a Waluigi Desk conversation: {where} has no '{key}'.")
    v = d[key]
    if not isinstance(v, typ):
        raise ImportFormatError(f"The file is not a Waluigi Desk conversation: {where}.{key} has the wrong type.")
    return v


def from_dict(store: Store, data: Any) -> int:
    """Create a conversation from exported data; returns its id. Bad data raises
    :class:`ImportFormatError` and writes nothing."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportFormatError("The file is not a Waluigi Desk conversation export.")
    if int(data.get("version", 0)) > VERSION:
        raise ImportFormatError("The file was exported by a newer version of Waluigi Desk.")
    conv = _req(data, "conversation", dict, "the file")
    msgs = _req(data, "messages", list, "the file")
    events = data.get("detector_events", []) or []
    title = _req(conv, "title", str, "conversation")
    system_prompt = _req(conv, "system_prompt", str, "conversation")
    for i, m in enumerate(msgs):
        _req(m, "content", str, f"message {i}")
        if _req(m, "role", str, f"message {i}") not in ("system", "user", "assistant"):
            raise ImportFormatError(f"Message {i} has an unknown role {m['role']!r}.")
    for i, e in enumerate(events):
        _req(e, "detector", str, f"detector event {i}")
        _req(e, "score", (int, float), f"detector event {i}")

    def write(db: Any) -> int:
        cid = db["conversations"].insert({
            "title": safe_text(title),
            "system_prompt": safe_text(system_prompt),
            "persona": conv.get("persona") or "",
            "created_at": float(conv.get("created_at") or 0.0),
            "updated_at": float(conv.get("updated_at") or 0.0),
            "pinned": int(bool(conv.get("pinned"))),
            "meta": json.dumps(conv.get("meta") or {}),
        }).last_pk
        ids = []
        for pos, m in enumerate(msgs):
            ids.append(db["messages"].insert({
                "conversation_id": cid,
                "position": pos,
                "role": m["role"],
                "content": safe_text(m["content"]),
                "created_at": float(m.get("created_at") or 0.0),
                "tokens": int(m.get("tokens") or 0),
                "status": m.get("status") or "complete",
                "in_context": int(bool(m.get("in_context", True))),
                "meta": json.dumps(m.get("meta") or {}),
            }).last_pk)
        for e in events:
            idx = e.get("message_index")
            db["detector_events"].insert({
                "conversation_id": cid,
                "message_id": ids[idx] if isinstance(idx, int) and 0 <= idx < len(ids) else None,
                "detector": e["detector"],
                "score": float(e["score"]),
                "threshold": e.get("threshold"),
                "flagged": int(bool(e.get("flagged"))),
                "category": e.get("category"),
                "evidence": json.dumps(e.get("evidence") or {}),
                "created_at": float(e.get("created_at") or 0.0),
                "feedback": e.get("feedback"),
            })
        return cid

    return store._write("the imported conversation", write)


def from_json(store: Store, text: str) -> int:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"The file is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    return from_dict(store, data)


def export_file(store: Store, conversation_id: int, path: str | Path) -> Path:
    """Write Markdown or JSON depending on the suffix (``.md`` / ``.json``)."""
    p = Path(path)
    text = to_markdown(store, conversation_id) if p.suffix.lower() in (".md", ".markdown") else to_json(store, conversation_id)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise KnownError(f"Could not write {p}: {exc.strerror or exc}.") from exc
    return p


def import_file(store: Store, path: str | Path) -> int:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"Could not read {p}: {getattr(exc, 'strerror', None) or exc}.") from exc
    return from_json(store, text)
