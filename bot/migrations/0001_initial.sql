-- Stories, their turns, per-server settings with per-channel overrides, and an audit of changes.

CREATE TABLE stories (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_by  INTEGER NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    archived_at TEXT
);

-- At most one active story per channel; /write archives the previous one.
CREATE UNIQUE INDEX stories_one_active_per_channel ON stories (channel_id) WHERE active = 1;
CREATE INDEX stories_by_guild ON stories (guild_id, created_at);

CREATE TABLE turns (
    id         INTEGER PRIMARY KEY,
    story_id   INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('opening', 'member', 'model')),
    author_id  INTEGER,
    text       TEXT    NOT NULL,
    settings   TEXT,   -- JSON: the generation settings a model turn was written with
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    UNIQUE (story_id, position)
);

-- channel_id 0 holds the server-wide value; any other channel_id overrides it there.
CREATE TABLE settings (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL DEFAULT 0,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,  -- JSON
    updated_by INTEGER NOT NULL,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (guild_id, channel_id, key)
);

CREATE TABLE settings_audit (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    old_value  TEXT,  -- JSON, NULL when it was unset
    new_value  TEXT,  -- JSON, NULL when it was reset
    changed_by INTEGER NOT NULL,
    changed_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX settings_audit_by_guild ON settings_audit (guild_id, id);
