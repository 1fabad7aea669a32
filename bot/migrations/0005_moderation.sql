-- Moderation: a server's banned words, and a record of every request for /stats.

CREATE TABLE banned_words (
    guild_id INTEGER NOT NULL,
    word     TEXT    NOT NULL,  -- as the moderator typed it
    folded   TEXT    NOT NULL,  -- as it is compared (bot.banned.entry_key)
    added_by INTEGER NOT NULL,
    added_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (guild_id, folded)
);

-- One row per request to write a part: written, or refused (and why).
CREATE TABLE requests (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    at         REAL    NOT NULL,  -- Unix time, seconds
    outcome    TEXT    NOT NULL,  -- "written", or the reason it was refused
    tokens     INTEGER NOT NULL DEFAULT 0,
    wait_ms    INTEGER,  -- from the request to the model starting on it
    write_ms   INTEGER   -- the model writing it
);
CREATE INDEX requests_by_guild ON requests (guild_id, at);

CREATE INDEX settings_audit_by_key ON settings_audit (guild_id, key, id);
