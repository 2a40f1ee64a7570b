"""Corrupt or foreign databases, a full disk and a read-only store (issue 5)."""

from __future__ import annotations

import os
import sqlite3

import pytest

from waluigi_desk.core.chat import ChatSession
from waluigi_desk.core.engine.scripted import ScriptedEngine
from waluigi_desk.core.settings import Settings
from waluigi_desk.core.store import MIGRATIONS, NewerSchemaError, Store, open_store
from waluigi_desk.errors import StorageFullError, StoreError


def _filled_db(p, n=300):
    s = Store(p)
    cid = s.create_conversation("old")
    for i in range(n):
        s.add_message(cid, "user", f"message {i} " + "lorem ipsum " * 30)
    s.close()
    return p


def _truncated(tmp_path):
    p = _filled_db(tmp_path / "waluigi.db")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _random_bytes(tmp_path):
    p = tmp_path / "waluigi.db"
    p.write_bytes(os.urandom(64 * 1024))
    return p


def _random_after_magic(tmp_path):
    p = tmp_path / "waluigi.db"
    p.write_bytes(b"SQLite format 3\x00" + os.urandom(16 * 1024))
    return p


def _foreign(tmp_path):
    p = tmp_path / "waluigi.db"
    con = sqlite3.connect(p)
    con.execute("create table moz_places (id integer primary key, url text)")
    con.executemany("insert into moz_places (url) values (?)", [(f"https://e.com/{i}",) for i in range(50)])
    con.commit()
    con.close()
    return p


@pytest.mark.parametrize("make,reason", [(_truncated, "corrupt"), (_random_bytes, "corrupt"),
                                         (_random_after_magic, "corrupt"), (_foreign, "foreign")])
def test_bad_database_moved_aside_and_fresh_store_started(tmp_path, make, reason):
    p = make(tmp_path)
    original = p.read_bytes()
    store, notice = open_store(p)
    try:
        aside = [a for a in tmp_path.glob(f"waluigi.db.{reason}-*") if not a.name.endswith(("-wal", "-shm"))]
        assert len(aside) == 1, list(tmp_path.iterdir())
        assert aside[0].read_bytes() == original  # moved, never deleted or altered
        assert notice and str(aside[0]) in notice and "fresh database" in notice
        assert store.list_conversations() == [] and store.integrity_check() == "ok"
        cid = store.create_conversation("new")
        store.add_message(cid, "user", "works")
    finally:
        store.close()
    # and the fresh one opens cleanly next time
    s2, notice2 = open_store(p)
    assert notice2 is None
    s2.close()


def test_two_bad_files_in_the_same_second_both_kept(tmp_path):
    for _ in range(2):
        _random_bytes(tmp_path)
        s, _ = open_store(tmp_path / "waluigi.db")
        s.close()
        (tmp_path / "waluigi.db").unlink()
        for side in tmp_path.glob("waluigi.db-*"):
            side.unlink()
    assert len([a for a in tmp_path.glob("waluigi.db.corrupt-*") if not a.name.endswith(("-wal", "-shm"))]) == 2


def test_newer_schema_refused_not_altered(tmp_path):
    p = _filled_db(tmp_path / "waluigi.db", n=5)
    con = sqlite3.connect(p)
    con.execute(f"pragma user_version = {len(MIGRATIONS) + 1}")
    con.commit()
    con.close()
    before = p.read_bytes()
    with pytest.raises(NewerSchemaError, match="newer version"):
        open_store(p)
    assert p.read_bytes() == before and not list(tmp_path.glob("waluigi.db.*-*"))


# -- full disk / read-only ---------------------------------------------------------------------
def _fill_up(store):
    """Make SQLite report 'database or disk is full' on the next write that needs a page."""
    pages = store.db.execute("pragma page_count").fetchone()[0]
    store.db.execute(f"pragma max_page_count = {pages}")


def _all_rows(store):
    return [(m.id, m.content, m.status) for c in store.list_conversations() for m in store.messages(c.id)]


def test_disk_full_when_saving_the_users_message(store):
    settings = Settings(store)
    session = ChatSession(store, ScriptedEngine(["fine, thanks"]), settings)
    cid = session.new_conversation()
    session.send(cid, "first message", lambda p: None)
    before = _all_rows(store)
    _fill_up(store)
    with pytest.raises(StorageFullError) as ei:
        session.send(cid, "x" * 200_000, lambda p: None)
    assert "disk is full" in ei.value.message and "nothing already saved was lost" in ei.value.message
    assert _all_rows(store) == before and store.integrity_check() == "ok"
    # space comes back: the same session goes on
    store.db.execute("pragma max_page_count = 1073741823")
    turn = session.send(cid, "after", lambda p: None)
    assert turn.error is None and turn.text == "fine, thanks"
    assert store.integrity_check() == "ok"


def test_disk_full_while_the_reply_streams(store):
    settings = Settings(store)
    settings.override("max_tokens", 10_000)
    long_reply = " ".join(f"word{i}" for i in range(5000))
    session = ChatSession(store, ScriptedEngine(["short one", long_reply]), settings, flush_every=0.0)
    cid = session.new_conversation()
    session.send(cid, "hello", lambda p: None)
    before = _all_rows(store)
    shown = []
    turn = session.send(cid, "tell me more", shown.append,
                        on_started=lambda rid, c, plan: _fill_up(store))
    # the reply still streamed in full; the user is told the save failed
    assert "".join(shown) == long_reply == turn.text
    assert turn.result.finish_reason == "stop"
    assert any("disk is full" in n for n in turn.notices)
    rows = _all_rows(store)
    assert rows[: len(before)] == before  # nothing already stored damaged
    assert [r[1] for r in rows[len(before):]][0] == "tell me more"
    assert store.integrity_check() == "ok"


def test_read_only_store(store):
    settings = Settings(store)
    session = ChatSession(store, ScriptedEngine(["ok"]), settings)
    cid = session.new_conversation()
    session.send(cid, "saved before", lambda p: None)
    before = _all_rows(store)
    store.db.execute("pragma query_only = on")  # every write now fails as on read-only media
    with pytest.raises(StorageFullError, match="read-only"):
        session.send(cid, "not saved", lambda p: None)
    with pytest.raises(StoreError):
        settings.set("temperature", 0.3)
    assert _all_rows(store) == before
    assert [m.content for m in store.messages(cid)] == ["saved before", "ok"]  # reading still works


def test_os_error_injected_at_the_storage_layer(store, monkeypatch):
    """ENOSPC from the OS (not from SQLite) gets the same clear message."""
    import errno

    cid = store.create_conversation("t")

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    import sqlite_utils

    with monkeypatch.context() as m:
        m.setattr(sqlite_utils.db.Table, "insert", boom)
        with pytest.raises(StorageFullError, match="disk is full"):
            store.add_message(cid, "user", "x")
    assert store.messages(cid) == [] and store.integrity_check() == "ok"


def test_terminal_chat_survives_a_full_disk(tmp_path, monkeypatch, capsys):
    """`waluigi-desk chat`: a failed save is reported and the chat goes on."""
    import io

    from waluigi_desk import cli
    from waluigi_desk.commands import common

    real_open = common.open_app_store
    holder = {}

    def open_and_limit(args, quiet=False):
        s = real_open(args, quiet=quiet)
        holder["s"] = s
        return s

    monkeypatch.setattr("waluigi_desk.commands.chat.open_app_store", open_and_limit)
    monkeypatch.setattr("waluigi_desk.commands.chat.load_engine", lambda settings: ScriptedEngine(["reply"]))

    class In(io.StringIO):
        def readline(self):
            line = super().readline()
            if line.startswith("big"):
                _fill_up(holder["s"])
            if line.startswith("after"):
                holder["s"].db.execute("pragma max_page_count = 1073741823")
            return line

    monkeypatch.setattr("sys.stdin", In("hello\nbig " + "y" * 300_000 + "\nafter\n"))
    rc = cli.main(["chat", "--no-detectors", "--home", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0 and "disk is full" in err
    s = holder["s"]
    texts = [m.content for c in s.list_conversations() for m in s.messages(c.id)]
    s.close()
    assert texts == ["hello", "reply", "after", "reply"]


def test_refused_store_leaves_no_connection_open(tmp_path, monkeypatch):
    import sqlite3 as sq

    opened = []
    real_connect = sq.connect

    def tracking_connect(*a, **k):
        c = real_connect(*a, **k)
        opened.append(c)
        return c

    p = _foreign(tmp_path)
    monkeypatch.setattr("waluigi_desk.core.store.sqlite3.connect", tracking_connect)
    from waluigi_desk.core.store import ForeignStoreError

    with pytest.raises(ForeignStoreError):
        Store(p)
    assert opened
    for c in opened:
        with pytest.raises(sq.ProgrammingError):  # closed
            c.execute("select 1")
