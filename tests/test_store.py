"""The SQLite store on real files: migrations, durability settings, ordering, archive, settings."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from importlib import resources

import pytest

from bot.errors import DatabaseBusy, DatabaseUnusable
from bot.store import (
    SERVER_WIDE,
    WRITE_WAIT_MS,
    NewTurn,
    PendingReply,
    Store,
    StoryGone,
    migrations,
)

GUILD, CHANNEL, OTHER_CHANNEL = 111, 222, 333
ALICE, BOB = 1001, 1002


def migration_files() -> list[str]:
    return sorted(
        e.name for e in resources.files("bot.migrations").iterdir() if e.name.endswith(".sql")
    )


@contextlib.contextmanager
def raw(path) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the same file, as another process would open it."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


async def test_migrations_from_empty_bring_the_schema_to_the_newest_version(tmp_path):
    path = tmp_path / "fresh" / "nested" / "bot.db"  # folders are created as needed

    store = await Store.open(path)
    try:
        version = await store.schema_version()
    finally:
        await store.close()

    assert version == len(migration_files()) == len(migrations()) >= 1
    with raw(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"stories", "turns", "settings", "settings_audit"} <= tables


async def test_reopening_applies_nothing_twice_and_keeps_the_data(tmp_path):
    path = tmp_path / "bot.db"
    store = await Store.open(path)
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Once upon a time", ALICE)
    await store.append_turns(story.id, [NewTurn("model", None, "there was a cat.", {"t": 1})])
    await store.set_setting(GUILD, SERVER_WIDE, "temperature", 0.5, ALICE)
    version = await store.schema_version()
    await store.close()

    reopened = await Store.open(path)
    try:
        assert await reopened.schema_version() == version
        assert await reopened.migrate() == version
        active = await reopened.active_story(CHANNEL)
        turns = await reopened.turns(active.id)
        settings = await reopened.settings(GUILD, CHANNEL)
    finally:
        await reopened.close()

    assert active == story
    assert [(t.kind, t.text, t.settings) for t in turns] == [
        ("opening", "Once upon a time", None),
        ("model", "there was a cat.", {"t": 1}),
    ]
    assert settings == ({"temperature": 0.5}, {})


async def test_the_file_is_in_wal_mode_with_full_synchronous_writes(store, config):
    with raw(config.database.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, per file
    # synchronous is per connection: ask the store's own (the only writer).
    async with store._db.execute("PRAGMA synchronous") as cursor:
        assert (await cursor.fetchone())[0] == 2  # FULL
    async with store._db.execute("PRAGMA foreign_keys") as cursor:
        assert (await cursor.fetchone())[0] == 1


async def test_turns_come_back_in_order_with_contiguous_positions(store):
    story, opening, archived = await store.start_story(GUILD, CHANNEL, "poem", "First", ALICE)
    first = await store.append_turns(story.id, [NewTurn("member", BOB, "Second")])
    second = await store.append_turns(
        story.id, [NewTurn("model", None, "Third"), NewTurn("member", ALICE, "Fourth")]
    )

    turns = await store.turns(story.id)

    assert archived is None
    assert story.mode == "poem" and story.active and story.title == "First"
    assert [t.text for t in turns] == ["First", "Second", "Third", "Fourth"]
    assert [t.position for t in turns] == [0, 1, 2, 3]
    assert turns == [opening, *first, *second]
    assert [t.author_id for t in turns] == [ALICE, BOB, None, ALICE]


async def test_title_is_the_opening_on_one_line_and_short(store):
    story, _, _ = await store.start_story(
        GUILD, CHANNEL, "story", "A  long\n\nopening " * 30, ALICE
    )

    assert "\n" not in story.title and "  " not in story.title
    assert len(story.title) == 100
    assert story.title.startswith("A long opening A long")


async def test_start_story_archives_the_channels_previous_story(store):
    first, _, _ = await store.start_story(GUILD, CHANNEL, "story", "The first tale", ALICE)
    elsewhere, _, _ = await store.start_story(GUILD, OTHER_CHANNEL, "story", "Next door", BOB)

    second, _, archived = await store.start_story(GUILD, CHANNEL, "news", "The second tale", BOB)

    assert archived is not None and archived.id == first.id and not archived.active
    assert (await store.active_story(CHANNEL)).id == second.id
    assert (await store.active_story(OTHER_CHANNEL)).id == elsewhere.id  # untouched
    assert [(s.id, s.active) for s in await store.stories(CHANNEL)] == [
        (second.id, True),
        (first.id, False),
    ]
    assert not (await store.story(first.id)).active
    assert [t.text for t in await store.turns(first.id)] == ["The first tale"]  # kept, not lost


async def test_the_database_itself_allows_one_active_story_per_channel(store, config):
    await store.start_story(GUILD, CHANNEL, "story", "Only one", ALICE)
    insert = (
        "INSERT INTO stories (guild_id, channel_id, title, mode, created_by, active)"
        " VALUES (?, ?, 'x', 'story', ?, ?)"
    )

    with raw(config.database.path) as db:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute(insert, (GUILD, CHANNEL, ALICE, 1))
        db.execute(insert, (GUILD, CHANNEL, ALICE, 0))  # archived ones may pile up
        db.execute(insert, (GUILD, OTHER_CHANNEL, ALICE, 1))  # another channel is free

    assert len(await store.stories(CHANNEL)) == 2


async def test_appending_to_an_archived_story_fails_and_writes_nothing(store):
    old, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Old", ALICE)
    await store.start_story(GUILD, CHANNEL, "story", "New", ALICE)

    with pytest.raises(StoryGone):
        await store.append_turns(old.id, [NewTurn("member", BOB, "late line")])
    with pytest.raises(StoryGone):
        await store.append_turns(9999, [NewTurn("member", BOB, "no such story")])

    assert [t.text for t in await store.turns(old.id, include_deleted=True)] == ["Old"]


async def test_soft_delete_hides_a_turn_but_keeps_it_in_the_record(store):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)
    _, model = await store.append_turns(
        story.id, [NewTurn("member", BOB, "mine"), NewTurn("model", None, "yours")]
    )

    await store.undo_turn(model.id, by=BOB)

    assert [t.text for t in await store.turns(story.id)] == ["Start", "mine"]
    everything = await store.turns(story.id, include_deleted=True)
    assert [(t.text, t.deleted, t.deleted_by) for t in everything] == [
        ("Start", False, None),
        ("mine", False, None),
        ("yours", True, BOB),
    ]
    await store.redo_turn(model.id)
    assert [t.text for t in await store.turns(story.id)] == ["Start", "mine", "yours"]
    await store.undo_turn(model.id, by=BOB)
    [after] = await store.append_turns(story.id, [NewTurn("model", None, "again")])
    assert after.position == 3  # a deleted turn's position is never reused


async def test_concurrent_appends_keep_unique_contiguous_positions(store):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)

    results = await asyncio.gather(
        *(
            store.append_turns(
                story.id,
                [NewTurn("member", ALICE + n, f"line {n}"), NewTurn("model", None, f"reply {n}")],
            )
            for n in range(20)
        )
    )

    turns = await store.turns(story.id)
    assert [t.position for t in turns] == list(range(41))
    for member, model in results:  # each pair landed together, nothing between them
        assert model.position == member.position + 1
        assert member.text.removeprefix("line ") == model.text.removeprefix("reply ")


async def test_settings_layer_server_and_channel_and_audit_every_change(store):
    assert await store.settings(GUILD, CHANNEL) == ({}, {})

    assert await store.set_setting(GUILD, SERVER_WIDE, "temperature", 0.5, ALICE) is None
    assert await store.set_setting(GUILD, SERVER_WIDE, "temperature", 0.7, BOB) == 0.5
    await store.set_setting(GUILD, CHANNEL, "max_new_tokens", 50, BOB)
    await store.set_setting(GUILD + 1, SERVER_WIDE, "temperature", 1.2, BOB)

    assert await store.settings(GUILD, CHANNEL) == ({"temperature": 0.7}, {"max_new_tokens": 50})
    assert await store.settings(GUILD, OTHER_CHANNEL) == ({"temperature": 0.7}, {})
    assert await store.settings(GUILD + 1, CHANNEL) == ({"temperature": 1.2}, {})

    assert await store.set_setting(GUILD, CHANNEL, "max_new_tokens", None, ALICE) == 50  # reset
    assert await store.settings(GUILD, CHANNEL) == ({"temperature": 0.7}, {})

    audit = await store.audit(GUILD)
    assert [(a.channel_id, a.key, a.old_value, a.new_value, a.changed_by) for a in audit] == [
        (CHANNEL, "max_new_tokens", 50, None, ALICE),
        (CHANNEL, "max_new_tokens", None, 50, BOB),
        (SERVER_WIDE, "temperature", 0.5, 0.7, BOB),
        (SERVER_WIDE, "temperature", None, 0.5, ALICE),
    ]
    assert all(a.guild_id == GUILD and a.changed_at for a in audit)
    assert len(await store.audit(GUILD, limit=2)) == 2


async def test_a_change_to_the_same_value_is_not_audited(store):
    await store.set_setting(GUILD, SERVER_WIDE, "temperature", 0.5, ALICE)
    assert await store.set_setting(GUILD, SERVER_WIDE, "temperature", 0.5, BOB) == 0.5
    assert await store.set_setting(GUILD, CHANNEL, "top_p", None, BOB) is None  # never set
    assert [(a.key, a.changed_by) for a in await store.audit(GUILD)] == [("temperature", ALICE)]


async def test_a_failed_write_leaves_nothing_behind(store, config):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)

    with pytest.raises(sqlite3.IntegrityError):
        await store.append_turns(
            story.id, [NewTurn("member", BOB, "fine"), NewTurn("bogus", BOB, "bad kind")]
        )

    assert [t.text for t in await store.turns(story.id)] == ["Start"]
    [next_turn] = await store.append_turns(story.id, [NewTurn("member", BOB, "fine")])
    assert next_turn.position == 1


async def test_writes_are_visible_to_another_connection_at_once(store, config):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Committed", ALICE)
    await store.append_turns(story.id, [NewTurn("model", None, "before it is shown")])

    with raw(config.database.path) as db:
        rows = db.execute(
            "SELECT position, text FROM turns WHERE story_id = ? ORDER BY position", (story.id,)
        ).fetchall()

    assert rows == [(0, "Committed"), (1, "before it is shown")]


@pytest.mark.parametrize("delay", [0, 0.0005, 0.002])
async def test_a_write_cancelled_midway_leaves_the_store_usable(store, delay):
    task = asyncio.create_task(store.start_story(GUILD, CHANNEL, "story", "Cut short", ALICE))
    await asyncio.sleep(delay)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Next", ALICE)
    assert (await store.active_story(CHANNEL)).id == story.id
    assert not store._db.in_transaction


# -- when the database is in trouble -------------------------------------------------------------


async def test_reads_are_not_held_up_by_a_writer_waiting_on_another_process(store, config):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)
    with raw(config.database.path) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        stuck = asyncio.ensure_future(store.append_turns(story.id, [NewTurn("member", BOB, "x")]))
        await asyncio.sleep(0.1)  # the writer is now waiting for the lock

        started = time.monotonic()
        turns = await asyncio.wait_for(store.turns(story.id), timeout=1)
        read_s = time.monotonic() - started

        with pytest.raises(DatabaseBusy) as caught:
            await stuck
        other.execute("ROLLBACK")
    assert read_s < 0.5 and [t.text for t in turns] == ["Start"]
    assert "busy" in caught.value.user_message
    # The write was refused whole, and the store still works.
    await store.append_turns(story.id, [NewTurn("member", BOB, "after")])
    assert [t.text for t in await store.turns(story.id)] == ["Start", "after"]


async def test_writers_queued_behind_a_locked_database_each_hear_busy_within_the_wait(
    store, config
):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)
    with raw(config.database.path) as other:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        writes = [
            store.append_turns(story.id, [NewTurn("member", BOB, f"line {i}")]) for i in range(4)
        ]
        results = await asyncio.gather(*writes, return_exceptions=True)
        waited = time.monotonic() - started
        other.execute("ROLLBACK")
    assert all(isinstance(r, DatabaseBusy) for r in results)
    assert waited < WRITE_WAIT_MS / 1000 + 1.0  # not four waits one after another
    await store.append_turns(story.id, [NewTurn("member", BOB, "after")])  # a full wait again
    assert [t.text for t in await store.turns(story.id)] == ["Start", "after"]


async def test_a_file_that_is_not_a_database_is_refused_naming_its_path(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)

    with pytest.raises(DatabaseUnusable) as caught:
        await Store.open(path)

    assert str(path) in str(caught.value) and "not a SQLite database" in str(caught.value)


async def test_quick_check_says_ok_for_a_sound_file_and_names_damage(tmp_path):
    path = tmp_path / "bot.db"
    store = await Store.open(path)
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)
    await store.append_turns(story.id, [NewTurn("member", BOB, "x" * 3000) for _ in range(50)])
    assert await store.quick_check() == "ok"
    await store.close()

    with raw(path) as db:  # checkpoint the WAL into the main file, then damage its pages
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = bytes(range(256)) * (3 * page // 256)
    path.write_bytes(bytes(data))

    try:
        damaged = await Store.open(path)
    except DatabaseUnusable as error:  # damage in the schema pages shows at once
        assert str(path) in str(error)
        return
    try:
        assert await damaged.quick_check() != "ok"
    finally:
        await damaged.close()


async def test_a_backup_taken_while_another_process_writes_is_whole_and_sound(
    store, config, tmp_path
):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)
    await store.append_turns(story.id, [NewTurn("member", BOB, f"line {n}") for n in range(200)])
    target = tmp_path / "backup.db"

    async def keep_writing():
        for n in range(20):
            await store.append_turns(story.id, [NewTurn("member", BOB, f"during {n}")])
            await asyncio.sleep(0)

    await asyncio.gather(store.backup(target), keep_writing())

    with raw(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        texts = [r[0] for r in copy.execute("SELECT text FROM turns ORDER BY position")]
    assert texts[:201] == ["Start", *(f"line {n}" for n in range(200))]


# -- replies members are waiting for ---------------------------------------------------------------


def reply(reply_id: int, user: int = ALICE, channel: int = CHANNEL) -> PendingReply:
    return PendingReply(reply_id, 42, f"secret-token-{reply_id}", 1.8e9, channel, user, "alice")


async def test_turns_saved_for_a_pending_reply_are_linked_to_it_in_their_transaction(store):
    await store.open_reply(reply(1))
    await store.open_reply(reply(2, BOB))
    story, opening, _ = await store.start_story(GUILD, CHANNEL, "story", "Once", ALICE, 1)
    [line] = await store.append_turns(story.id, [NewTurn("member", BOB, "Bob's line")], 2)
    [part] = await store.append_turns(story.id, [NewTurn("model", None, "Then")], 2)
    await store.append_turns(story.id, [NewTurn("model", None, "Unlinked")])

    first, second = await store.pending_replies()
    assert (first.id, first.token, first.user_name) == (1, "secret-token-1", "alice")
    assert first.saved == (opening,)
    assert second.saved == (line, part)


async def test_a_closed_reply_is_gone_with_its_links_and_later_turns_are_not_linked(store):
    await store.open_reply(reply(1))
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Once", ALICE, 1)
    await store.close_reply(1)
    await store.append_turns(story.id, [NewTurn("model", None, "After")], 1)

    assert await store.pending_replies() == []
    with raw(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM pending_reply_turns").fetchone()[0] == 0
    assert [t.text for t in await store.turns(story.id)] == ["Once", "After"]


async def test_pending_replies_survive_a_reopen(store, config):
    await store.open_reply(reply(7))
    await store.close()
    reopened = await Store.open(config.database.path)
    try:
        [left] = await reopened.pending_replies()
    finally:
        await reopened.close()
    assert left == reply(7)


def test_a_pending_reply_never_shows_its_token():
    assert "secret-token" not in repr(reply(1)) and "secret-token" not in str(reply(1))


async def test_a_database_from_a_newer_storybot_is_refused_not_guessed_at(tmp_path):
    path = tmp_path / "newer.db"
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {len(migrations()) + 1}")

    with pytest.raises(DatabaseUnusable, match="written by a newer storybot"):
        await Store.open(path)


# -- versions, memory and note, ending and resuming ------------------------------------------------


async def test_a_part_keeps_every_version_and_the_chosen_one_is_the_storys(store):
    story, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Start", ALICE)
    [part] = await store.append_turns(
        story.id, [NewTurn("model", None, "first", {"t": 1}, b"notes-1", requested_by=BOB)]
    )
    assert (part.version, part.versions, part.requested_by) == (1, 1, BOB)

    second = await store.add_version(part.id, "second", {"t": 2}, b"notes-2")
    edited = await store.add_version(part.id, "second, edited", {"t": 2}, None, edited_by=ALICE)

    assert (second.text, second.version, second.versions) == ("second", 2, 2)
    assert (edited.version, edited.versions, edited.edited_by) == (3, 3, ALICE)
    assert await store.turn_notes(part.id) is None  # an edit has no token notes
    first = await store.choose_version(part.id, 1)
    assert (first.text, first.settings, first.edited_by) == ("first", {"t": 1}, None)
    assert await store.turn_notes(part.id) == b"notes-1"
    assert [t.text for t in await store.turns(story.id)] == ["Start", "first"]
    assert [n for n, _, _ in await store.versions(part.id)] == [1, 2, 3]
    with pytest.raises(ValueError):
        await store.choose_version(part.id, 9)


async def test_memory_note_end_and_resume(store):
    old, _, _ = await store.start_story(GUILD, CHANNEL, "story", "Old tale", ALICE)
    await store.set_memory(old.id, "Mira is a blind cartographer.")
    await store.set_note(old.id, "Keep it gloomy.")
    new, _, _ = await store.start_story(GUILD, CHANNEL, "story", "New tale", ALICE)

    archived = await store.resume_story(old.id)

    again = await store.active_story(CHANNEL)
    assert again.id == old.id and again.memory == "Mira is a blind cartographer."
    assert again.note == "Keep it gloomy." and archived.id == new.id and not archived.active
    await store.end_story(old.id)
    assert await store.active_story(CHANNEL) is None
    assert (await store.story(old.id)).ended_at is not None


async def test_a_database_from_before_steering_upgrades_with_nothing_lost(tmp_path):
    path = tmp_path / "before.db"
    with raw(path) as db:  # the schema as it was, with a story in it
        for _, _, sql in migrations()[:3]:
            db.executescript(sql)
        db.execute("PRAGMA user_version = 3")
        db.execute(
            "INSERT INTO stories (guild_id, channel_id, title, mode, created_by)"
            " VALUES (1, 2, 'Kept', 'story', 3)"
        )
        db.execute(
            "INSERT INTO turns (story_id, position, kind, author_id, text)"
            " VALUES (1, 0, 'opening', 3, 'Once'), (1, 1, 'model', NULL, 'upon a time')"
        )
    store = await Store.open(path)
    try:
        story = await store.active_story(2)
        turns = await store.turns(story.id)
    finally:
        await store.close()
    assert (story.title, story.memory, story.note) == ("Kept", "", "")
    assert [(t.text, t.version, t.versions) for t in turns] == [
        ("Once", 1, 1),
        ("upon a time", 1, 1),
    ]
