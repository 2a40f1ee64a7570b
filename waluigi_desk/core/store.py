"""The SQLite store: every conversation, message, detector event, setting and cached embedding.

Habits (see ../shared/DESIGN.md):
- named, append-only migrations applied whenever the store opens; ``PRAGMA user_version`` holds
  how many ran, so a database from a newer version of the app is refused, never altered;
- ``PRAGMA application_id`` marks the file as ours, so another application's SQLite file is told
  apart from an empty one;
- WAL with ``synchronous=FULL``: a committed row survives SIGKILL and power loss;
- one connection per thread (a sqlite3 connection belongs to the thread that opened it); every
  logical write is one transaction;
- an FTS5 index over message text, kept in step by triggers.

Messages are written as they happen: the user's message is committed before generation starts,
an assistant reply is inserted with status ``interrupted`` when streaming begins, flushed while
it streams and marked ``complete`` when it ends. A crash therefore leaves the partial reply as
``interrupted`` with no repair step needed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import sqlite_utils

from waluigi_desk.errors import StoreError, storage_error_from_os

APPLICATION_ID = 0x57414C55  # "WALU"
SQLITE_MAGIC = b"SQLite format 3\x00"


class CorruptStoreError(StoreError):
    """The file is not a readable SQLite database."""


class ForeignStoreError(StoreError):
    """A SQLite database that belongs to another application."""


class NewerSchemaError(StoreError):
    """A database written by a newer version of Waluigi Desk."""


def now() -> float:
    return time.time()


def safe_text(text: str) -> str:
    """``text`` as SQLite can store it: lone surrogates (e.g. undecodable terminal bytes read
    with surrogateescape) become U+FFFD instead of failing the write; valid text is unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ---------------------------------------------------------------------------------------------
# migrations: append only, never edit one that has shipped
# ---------------------------------------------------------------------------------------------
MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {
            "id": int,
            "title": str,
            "system_prompt": str,
            "persona": str,
            "created_at": float,
            "updated_at": float,
            "pinned": int,
            "deleted_at": float,
            "parent_id": int,
            "fork_message_id": int,
            "meta": str,
        },
        pk="id",
        not_null={"title", "system_prompt", "created_at", "updated_at"},
        defaults={"pinned": 0, "persona": "", "meta": "{}"},
    )
    db["messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "position": int,
            "role": str,
            "content": str,
            "created_at": float,
            "tokens": int,
            "status": str,
            "in_context": int,
            "meta": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "position", "role", "content", "created_at", "status"},
        defaults={"in_context": 1, "status": "complete", "meta": "{}", "tokens": 0},
    )
    db["messages"].create_index(["conversation_id", "position"], unique=True)
    db["detector_events"].create(
        {
            "id": int,
            "conversation_id": int,
            "message_id": int,
            "detector": str,
            "score": float,
            "threshold": float,
            "flagged": int,
            "category": str,
            "evidence": str,
            "created_at": float,
            "feedback": str,
        },
        pk="id",
        not_null={"conversation_id", "detector", "score", "flagged", "created_at"},
        defaults={"evidence": "{}"},
    )
    db["detector_events"].create_index(["message_id"])
    db["detector_events"].create_index(["conversation_id"])
    db["settings"].create({"name": str, "value": str}, pk="name", not_null={"value"})
    db["embeddings"].create(
        {"key": str, "model": str, "dim": int, "vector": bytes, "created_at": float},
        pk="key",
    )
    db["messages"].enable_fts(
        ["content"], create_triggers=True, tokenize="unicode61 remove_diacritics 2"
    )


SCHEMA_VERSION_KNOWN = len(MIGRATIONS)


def _ts(path: Path) -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------
@dataclass
class ConversationRow:
    id: int
    title: str
    system_prompt: str
    persona: str
    created_at: float
    updated_at: float
    pinned: bool
    parent_id: int | None = None
    fork_message_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> "ConversationRow":
        return cls(
            id=r["id"],
            title=r["title"],
            system_prompt=r["system_prompt"],
            persona=r.get("persona") or "",
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            pinned=bool(r.get("pinned")),
            parent_id=r.get("parent_id"),
            fork_message_id=r.get("fork_message_id"),
            meta=json.loads(r.get("meta") or "{}"),
        )


@dataclass
class MessageRow:
    id: int
    conversation_id: int
    position: int
    role: str
    content: str
    created_at: float
    tokens: int
    status: str
    in_context: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> "MessageRow":
        return cls(
            id=r["id"],
            conversation_id=r["conversation_id"],
            position=r["position"],
            role=r["role"],
            content=r["content"],
            created_at=r["created_at"],
            tokens=r.get("tokens") or 0,
            status=r["status"],
            in_context=bool(r["in_context"]),
            meta=json.loads(r.get("meta") or "{}"),
        )


@dataclass
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int
    role: str
    snippet: str  # text with hits wrapped in \x02 ... \x03 (the UI turns them into highlights)


HIT_START, HIT_END = "\x02", "\x03"


def fts_query(text: str) -> str:
    """Turn free text into a safe FTS5 query: every word quoted, all words required,
    the last one as a prefix (search as you type)."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        return ""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


class Store:
    """Thread-aware access to one SQLite file. Open with :func:`open_store`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._local = threading.local()
        self._checked = False  # no write (not even WAL mode) before the file is known to be ours
        self._check_file()
        db = self.db  # opens on this thread
        try:
            self._check_owner(db)
            self._checked = True
            self._setup_connection(db)
            self._migrate(db)
        except BaseException:
            self.close()  # so a refused file can be moved aside (Windows keeps open files locked)
            raise

    # -- connections --------------------------------------------------------------------------
    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=10.0)
                conn.execute("PRAGMA foreign_keys=ON")
                db = sqlite_utils.Database(conn)
                if self._checked:
                    self._setup_connection(db)
            except sqlite3.DatabaseError as exc:
                raise CorruptStoreError(
                    f"{self.path} is not a readable Waluigi Desk database ({exc})."
                ) from exc
            self._local.db = db
        return db

    @staticmethod
    def _setup_connection(db: sqlite_utils.Database) -> None:
        conn = db.conn
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            try:
                db.enable_wal()
            except sqlite3.OperationalError:
                pass  # read-only media: carry on in the mode we have
        conn.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    # -- integrity ----------------------------------------------------------------------------
    def _check_file(self) -> None:
        p = self.path
        if p.is_dir():
            raise CorruptStoreError(f"{p} is a folder, not a database file.")
        if p.exists() and p.stat().st_size > 0:
            with open(p, "rb") as f:
                head = f.read(16)
            if head != SQLITE_MAGIC:
                raise CorruptStoreError(
                    f"{p} is not a SQLite database (its first bytes are wrong); it was left as it is."
                )
        else:
            p.parent.mkdir(parents=True, exist_ok=True)

    def _check_owner(self, db: sqlite_utils.Database) -> None:
        try:
            app_id = db.conn.execute("PRAGMA application_id").fetchone()[0]
            version = db.conn.execute("PRAGMA user_version").fetchone()[0]
            tables = set(db.table_names())
            if app_id == 0 and not tables:
                return  # brand new
            ok = db.conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(f"{self.path} is damaged and cannot be read ({exc}).") from exc
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and "_migrations" not in tables):
            raise ForeignStoreError(
                f"{self.path} is a SQLite database of another application; it was left as it is."
            )
        if ok != "ok":
            raise CorruptStoreError(f"{self.path} is damaged ({ok}).")
        known = len(MIGRATIONS)
        if version > known:
            raise NewerSchemaError(
                f"{self.path} was written by a newer version of Waluigi Desk (schema {version}, "
                f"this version knows {known}). Update the app; the file was not changed."
            )

    def _migrate(self, db: sqlite_utils.Database) -> None:
        conn = db.conn
        try:
            if "_migrations" not in db.table_names():
                with conn:
                    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    db["_migrations"].create({"name": str, "applied_at": float}, pk="name")
            done = {r["name"] for r in db["_migrations"].rows}
            for i, (name, fn) in enumerate(MIGRATIONS, start=1):
                if name in done:
                    continue
                with conn:  # one transaction a migration
                    fn(db)
                    db["_migrations"].insert({"name": name, "applied_at": now()})
                    conn.execute(f"PRAGMA user_version={i}")
        except (sqlite3.OperationalError, OSError) as exc:
            raise storage_error_from_os(exc, "the database schema") from exc

    def integrity_check(self) -> str:
        return self.db.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # -- writing helper -----------------------------------------------------------------------
    def _write(self, what: str, fn: Callable[[sqlite_utils.Database], Any]) -> Any:
        db = self.db
        try:
            with db.conn:
                # take the write lock first: with several threads writing (engine, detectors, the
                # window's DB worker) a deferred transaction that read first fails at once with
                # "database is locked" (WAL snapshot), and two next-position reads could race
                if not db.conn.in_transaction:
                    db.conn.execute("BEGIN IMMEDIATE")
                return fn(db)
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            raise storage_error_from_os(exc, what) from exc

    # -- settings -----------------------------------------------------------------------------
    def load_settings(self) -> dict[str, str]:
        return {r["name"]: r["value"] for r in self.db["settings"].rows}

    def save_setting(self, name: str, value_json: str) -> None:
        self._write("a setting", lambda db: db["settings"].upsert({"name": name, "value": value_json}, pk="name"))

    # -- conversations ------------------------------------------------------------------------
    def create_conversation(
        self,
        title: str = "New chat",
        system_prompt: str = "",
        persona: str = "",
        parent_id: int | None = None,
        fork_message_id: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        t = now()

        def w(db: sqlite_utils.Database) -> int:
            return db["conversations"].insert(
                {
                    "title": title,
                    "system_prompt": system_prompt,
                    "persona": persona,
                    "created_at": t,
                    "updated_at": t,
                    "pinned": 0,
                    "parent_id": parent_id,
                    "fork_message_id": fork_message_id,
                    "meta": json.dumps(meta or {}),
                }
            ).last_pk

        return self._write("the new conversation", w)

    def get_conversation(self, conversation_id: int) -> ConversationRow:
        try:
            return ConversationRow.from_row(self.db["conversations"].get(conversation_id))
        except sqlite_utils.db.NotFoundError:
            raise StoreError(f"There is no conversation {conversation_id}.") from None

    def list_conversations(self, include_deleted: bool = False) -> list[ConversationRow]:
        where = "" if include_deleted else "where deleted_at is null"
        rows = self.db.query(
            f"select * from conversations {where} order by pinned desc, updated_at desc, id desc"
        )
        return [ConversationRow.from_row(r) for r in rows]

    def update_conversation(self, conversation_id: int, **fields: Any) -> None:
        if "meta" in fields and not isinstance(fields["meta"], str):
            fields["meta"] = json.dumps(fields["meta"])
        if "pinned" in fields:
            fields["pinned"] = int(bool(fields["pinned"]))
        self._write("the conversation", lambda db: db["conversations"].update(conversation_id, fields))

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self.update_conversation(conversation_id, title=safe_text(title.strip()) or "Untitled")

    def delete_conversation(self, conversation_id: int) -> None:
        """Soft delete: hidden from the list, restorable with :meth:`restore_conversation`."""
        self.update_conversation(conversation_id, deleted_at=now())

    def restore_conversation(self, conversation_id: int) -> None:
        self.update_conversation(conversation_id, deleted_at=None)

    def purge_conversation(self, conversation_id: int) -> None:
        def w(db: sqlite_utils.Database) -> None:
            db.execute("delete from detector_events where conversation_id = ?", [conversation_id])
            db.execute("delete from messages where conversation_id = ?", [conversation_id])
            db.execute("delete from conversations where id = ?", [conversation_id])

        self._write("the deletion", w)

    # -- messages -----------------------------------------------------------------------------
    def _next_position(self, db: sqlite_utils.Database, conversation_id: int) -> int:
        row = db.execute(
            "select coalesce(max(position), -1) + 1 from messages where conversation_id = ?",
            [conversation_id],
        ).fetchone()
        return int(row[0])

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        tokens: int = 0,
        status: str = "complete",
        in_context: bool = True,
        meta: dict[str, Any] | None = None,
        created_at: float | None = None,
    ) -> int:
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"bad role {role!r}")
        content = safe_text(content)
        t = now() if created_at is None else created_at

        def w(db: sqlite_utils.Database) -> int:
            pk = db["messages"].insert(
                {
                    "conversation_id": conversation_id,
                    "position": self._next_position(db, conversation_id),
                    "role": role,
                    "content": content,
                    "created_at": t,
                    "tokens": tokens,
                    "status": status,
                    "in_context": int(in_context),
                    "meta": json.dumps(meta or {}),
                }
            ).last_pk
            db.execute("update conversations set updated_at = ? where id = ?", [max(t, now()), conversation_id])
            return pk

        return self._write("your message" if role == "user" else "the reply", w)

    def begin_reply(self, conversation_id: int, meta: dict[str, Any] | None = None) -> int:
        """Insert an empty assistant message marked ``interrupted`` until it is finished."""
        return self.add_message(conversation_id, "assistant", "", status="interrupted", meta=meta)

    def update_reply(self, message_id: int, content: str, tokens: int = 0) -> None:
        self._write(
            "the reply",
            lambda db: db.execute(
                "update messages set content = ?, tokens = ? where id = ?", [safe_text(content), tokens, message_id]
            ),
        )

    def finish_reply(
        self,
        message_id: int,
        content: str,
        *,
        status: str,
        tokens: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> None:
        def w(db: sqlite_utils.Database) -> None:
            old = db["messages"].get(message_id)
            m = json.loads(old.get("meta") or "{}")
            m.update(meta or {})
            db["messages"].update(
                message_id, {"content": safe_text(content), "status": status, "tokens": tokens, "meta": json.dumps(m)}
            )
            db.execute("update conversations set updated_at = ? where id = ?", [now(), old["conversation_id"]])

        self._write("the reply", w)

    def get_message(self, message_id: int) -> MessageRow:
        try:
            return MessageRow.from_row(self.db["messages"].get(message_id))
        except sqlite_utils.db.NotFoundError:
            raise StoreError(f"There is no message {message_id}.") from None

    def messages(self, conversation_id: int) -> list[MessageRow]:
        rows = self.db.query(
            "select * from messages where conversation_id = ? order by position", [conversation_id]
        )
        return [MessageRow.from_row(r) for r in rows]

    def set_in_context(self, message_id: int, in_context: bool) -> None:
        self._write(
            "the context change",
            lambda db: db.execute("update messages set in_context = ? where id = ?", [int(in_context), message_id]),
        )

    def update_message_meta(self, message_id: int, **meta: Any) -> None:
        def w(db: sqlite_utils.Database) -> None:
            old = json.loads(db["messages"].get(message_id).get("meta") or "{}")
            old.update(meta)
            db["messages"].update(message_id, {"meta": json.dumps(old)})

        self._write("the message", w)

    def delete_message(self, message_id: int) -> None:
        def w(db: sqlite_utils.Database) -> None:
            db.execute("delete from detector_events where message_id = ?", [message_id])
            db.execute("delete from messages where id = ?", [message_id])

        self._write("the deletion", w)

    def fork_conversation(
        self, conversation_id: int, before_position: int, *, title: str | None = None, meta: dict[str, Any] | None = None
    ) -> int:
        """A new conversation holding copies of the messages before ``before_position``.
        The original is left untouched (edit-and-resend and rewind both fork)."""
        src = self.get_conversation(conversation_id)
        msgs = [m for m in self.messages(conversation_id) if m.position < before_position]
        fork_msg = next((m.id for m in self.messages(conversation_id) if m.position == before_position), None)
        t = now()

        def w(db: sqlite_utils.Database) -> int:
            cid = db["conversations"].insert(
                {
                    "title": title or f"{src.title} (fork)",
                    "system_prompt": src.system_prompt,
                    "persona": src.persona,
                    "created_at": t,
                    "updated_at": t,
                    "pinned": 0,
                    "parent_id": conversation_id,
                    "fork_message_id": fork_msg,
                    "meta": json.dumps(meta or {}),
                }
            ).last_pk
            db["messages"].insert_all(
                {
                    "conversation_id": cid,
                    "position": i,
                    "role": m.role,
                    "content": m.content,
                    "created_at": m.created_at,
                    "tokens": m.tokens,
                    "status": m.status,
                    "in_context": int(m.in_context),
                    "meta": json.dumps({**m.meta, "copied_from": m.id}),
                }
                for i, m in enumerate(msgs)
            )
            return cid

        return self._write("the fork", w)

    def count_messages(self) -> int:
        return self.db.execute("select count(*) from messages").fetchone()[0]

    # -- search -------------------------------------------------------------------------------
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        q = fts_query(text)
        if not q:
            return []
        sql = f"""
            select m.id as message_id, m.conversation_id, m.role, c.title,
                   snippet(messages_fts, 0, '{HIT_START}', '{HIT_END}', '…', 12) as snip
            from messages_fts
            join messages m on m.rowid = messages_fts.rowid
            join conversations c on c.id = m.conversation_id
            where messages_fts match ? and c.deleted_at is null
            order by rank limit ?
        """
        try:
            rows = self.db.execute(sql, [q, limit]).fetchall()
        except sqlite3.OperationalError:
            return []
        return [SearchHit(r[1], r[3], r[0], r[2], r[4]) for r in rows]

    # -- detector events ----------------------------------------------------------------------
    def add_detector_event(
        self,
        conversation_id: int,
        message_id: int | None,
        detector: str,
        score: float,
        flagged: bool,
        *,
        threshold: float | None = None,
        category: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> int:
        return self._write(
            "the detector event",
            lambda db: db["detector_events"].insert(
                {
                    "conversation_id": conversation_id,
                    "message_id": message_id,
                    "detector": detector,
                    "score": float(score),
                    "threshold": threshold,
                    "flagged": int(bool(flagged)),
                    "category": category,
                    "evidence": json.dumps(evidence or {}),
                    "created_at": now(),
                }
            ).last_pk,
        )

    def detector_events(self, conversation_id: int | None = None, message_id: int | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if conversation_id is not None:
            clauses.append("conversation_id = ?")
            params.append(conversation_id)
        if message_id is not None:
            clauses.append("message_id = ?")
            params.append(message_id)
        where = ("where " + " and ".join(clauses)) if clauses else ""
        out = []
        for r in self.db.query(f"select * from detector_events {where} order by id", params):
            r = dict(r)
            r["evidence"] = json.loads(r.get("evidence") or "{}")
            r["flagged"] = bool(r["flagged"])
            out.append(r)
        return out

    def set_event_feedback(self, message_id: int, feedback: str | None) -> None:
        self._write(
            "the feedback",
            lambda db: db.execute("update detector_events set feedback = ? where message_id = ?", [feedback, message_id]),
        )

    # -- embeddings cache ---------------------------------------------------------------------
    def get_embeddings(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(keys)
        out: dict[str, bytes] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for k, v in self.db.execute(f"select key, vector from embeddings where key in ({marks})", chunk):
                out[k] = v
        return out

    def put_embeddings(self, model: str, items: dict[str, bytes], dim: int) -> None:
        t = now()
        self._write(
            "the embedding cache",
            lambda db: db["embeddings"].upsert_all(
                ({"key": k, "model": model, "dim": dim, "vector": v, "created_at": t} for k, v in items.items()),
                pk="key",
            ),
        )


# ---------------------------------------------------------------------------------------------
def move_aside(path: Path, reason: str) -> Path:
    """Rename a database we cannot use to ``<name>.<reason>-<timestamp>`` (never delete it)."""
    target = path.with_name(f"{path.name}.{reason}-{_ts(path)}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{reason}-{_ts(path)}-{n}")
        n += 1
    shutil.move(str(path), str(target))
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            shutil.move(str(side), str(target) + suffix)
    return target


def open_store(path: str | os.PathLike[str] | None = None, *, recover: bool = True) -> tuple[Store, str | None]:
    """Open the store; with ``recover``, a corrupt or foreign file is moved aside with a
    timestamped name and a fresh store started. Returns ``(store, notice)`` where ``notice``
    tells the user what happened (None when all was well). A newer schema is always refused."""
    from waluigi_desk.paths import database_path

    p = Path(path) if path is not None else database_path()
    try:
        return Store(p), None
    except (CorruptStoreError, ForeignStoreError) as exc:
        if not recover or p.is_dir():
            raise
        reason = "corrupt" if isinstance(exc, CorruptStoreError) else "foreign"
        moved = move_aside(p, reason)
        notice = f"{exc.message} It was moved to {moved} and a fresh database was started."
        return Store(p), notice


def iter_all_messages(store: Store) -> Iterator[MessageRow]:
    for r in store.db.query("select * from messages order by conversation_id, position"):
        yield MessageRow.from_row(r)
