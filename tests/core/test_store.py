"""The SQLite store through a real file: migrations, refusing files that are not ours,
moving a corrupt or foreign file aside, and the basic writes the chat relies on."""

from __future__ import annotations

import os
import sqlite3

import pytest

from waluigi_desk.core import store as store_mod
from waluigi_desk.core.store import (
    APPLICATION_ID, MIGRATIONS, CorruptStoreError, ForeignStoreError, NewerSchemaError, Store,
    fts_query, open_store,
)


def _pragma(path, name):
    con = sqlite3.connect(path)
    try:
        return con.execute(f"pragma {name}").fetchone()[0]
    finally:
        con.close()


def test_migrations_from_empty_file_and_reopen(tmp_path):
    p = tmp_path / "w.db"
    p.write_bytes(b"")  # a zero-byte file counts as new
    s = Store(p)
    try:
        assert {"conversations", "messages", "detector_events", "settings", "embeddings",
                "messages_fts", "_migrations"} <= set(s.db.table_names())
        applied = {r["name"]: r["applied_at"] for r in s.db["_migrations"].rows}
        assert list(applied) == [n for n, _ in MIGRATIONS]
        cid = s.create_conversation("first", system_prompt="sys")
        s.add_message(cid, "user", "hello")
        assert s.db.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("pragma synchronous").fetchone()[0] == 2  # FULL
    finally:
        s.close()
    assert _pragma(p, "user_version") == len(MIGRATIONS)
    assert _pragma(p, "application_id") == APPLICATION_ID
    s2 = Store(p)
    try:
        again = {r["name"]: r["applied_at"] for r in s2.db["_migrations"].rows}
        assert again == applied  # nothing re-ran
        assert [m.content for m in s2.messages(cid)] == ["hello"]
        assert s2.integrity_check() == "ok"
    finally:
        s2.close()


def test_a_new_migration_runs_once_on_open(tmp_path, monkeypatch):
    p = tmp_path / "w.db"
    Store(p).close()
    calls = []

    def m999_extra(db):
        calls.append(1)
        db["extra"].create({"id": int}, pk="id")

    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS + [("m999_extra", m999_extra)])
    for _ in range(2):
        s = Store(p)
        assert "extra" in s.db.table_names()
        s.close()
    assert calls == [1]
    assert _pragma(p, "user_version") == len(MIGRATIONS) + 1


@pytest.mark.parametrize("content", [b"hello, I am a text file\n" * 100, b"\x00" * 4096,
                                     bytes(range(256)) * 8])
def test_store_refuses_non_sqlite_file_without_touching_it(tmp_path, content):
    p = tmp_path / "notes.db"
    p.write_bytes(content)
    mtime = p.stat().st_mtime_ns
    with pytest.raises(CorruptStoreError) as ei:
        Store(p)
    assert str(p) in ei.value.message and "not a SQLite database" in ei.value.message
    assert p.read_bytes() == content and p.stat().st_mtime_ns == mtime
    assert not (tmp_path / "notes.db-wal").exists()
    with pytest.raises(CorruptStoreError):
        open_store(p, recover=False)
    assert p.read_bytes() == content


def test_store_refuses_a_folder(tmp_path):
    (tmp_path / "d.db").mkdir()
    with pytest.raises(CorruptStoreError, match="folder"):
        open_store(tmp_path / "d.db")


def _foreign_db(p):
    con = sqlite3.connect(p)
    con.execute("create table photos (id integer primary key, path text)")
    con.execute("insert into photos (path) values ('a.jpg')")
    con.commit()
    con.close()


def test_foreign_sqlite_refused_untouched(tmp_path):
    p = tmp_path / "other.db"
    _foreign_db(p)
    before = p.read_bytes()
    with pytest.raises(ForeignStoreError, match="another application"):
        Store(p)
    assert p.read_bytes() == before


def test_newer_schema_refused_untouched_even_with_recover(tmp_path):
    p = tmp_path / "w.db"
    s = Store(p)
    s.create_conversation("keep me")
    s.close()
    con = sqlite3.connect(p)
    con.execute(f"pragma user_version={len(MIGRATIONS) + 5}")
    con.commit()
    con.close()
    before = p.read_bytes()
    with pytest.raises(NewerSchemaError) as ei:
        open_store(p)
    assert "newer version" in ei.value.message and "not changed" in ei.value.message
    assert p.read_bytes() == before
    assert list(tmp_path.glob("w.db.*")) == []  # not moved aside either


def test_basic_conversation_and_messages(store):
    cid = store.create_conversation("New chat", system_prompt="sys")
    u = store.add_message(cid, "user", "question", tokens=3)
    r = store.begin_reply(cid, meta={"model": "m"})
    assert store.get_message(r).status == "interrupted"
    store.update_reply(r, "partial")
    assert store.get_message(r).content == "partial"
    store.finish_reply(r, "full answer", status="complete", tokens=2, meta={"finish_reason": "stop"})
    m = store.get_message(r)
    assert (m.content, m.status, m.tokens, m.meta) == ("full answer", "complete", 2,
                                                       {"model": "m", "finish_reason": "stop"})
    assert [x.position for x in store.messages(cid)] == [0, 1]
    store.set_in_context(u, False)
    assert store.get_message(u).in_context is False
    with pytest.raises(ValueError):
        store.add_message(cid, "robot", "x")
    from waluigi_desk.errors import StoreError

    with pytest.raises(StoreError, match="no conversation"):
        store.get_conversation(999)


def test_search_and_fts_query_is_safe(store):
    cid = store.create_conversation("t")
    store.add_message(cid, "user", "The dragon guarded the lighthouse")
    store.add_message(cid, "assistant", "Crème brûlée is dessert")
    hits = store.search("lighthou")  # prefix search as you type
    assert len(hits) == 1 and "\x02" in hits[0].snippet
    assert len(store.search("creme brulee")) == 1  # diacritics folded
    for nasty in ['"', "AND OR NOT", "*", "dragon\"; drop table messages; --", "NEAR(", "^", ""]:
        store.search(nasty)  # never raises
    assert fts_query('a"b c') == '"a" "b" "c"*'
    assert store.count_messages() == 2


def test_soft_delete_restore_purge_and_fork(store):
    cid = store.create_conversation("t")
    for i in range(4):
        store.add_message(cid, "user" if i % 2 == 0 else "assistant", f"m{i}")
    fork = store.fork_conversation(cid, 2)
    assert [m.content for m in store.messages(fork)] == ["m0", "m1"]
    assert [m.content for m in store.messages(cid)] == ["m0", "m1", "m2", "m3"]
    store.delete_conversation(cid)
    assert cid not in [c.id for c in store.list_conversations()]
    assert store.search("m0")  # the fork still holds it
    store.restore_conversation(cid)
    assert cid in [c.id for c in store.list_conversations()]
    store.purge_conversation(cid)
    assert store.messages(cid) == []


def test_one_connection_per_thread(store):
    import threading

    cid = store.create_conversation("t")
    errors = []

    def worker():
        try:
            store.add_message(cid, "user", "from a thread")
            store.close()
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert not errors
    assert [m.content for m in store.messages(cid)] == ["from a thread"]


def test_open_store_uses_data_root(temp_home):
    s, notice = open_store()
    try:
        assert notice is None and s.path == temp_home / "waluigi.db"
    finally:
        s.close()
    assert os.path.exists(temp_home / "waluigi.db")
