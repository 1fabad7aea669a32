-- Members' commands being answered. A row lives from the moment the bot acknowledges the command
-- until the answer is delivered; one left behind by a crash is answered at the next start (while
-- Discord still accepts it) with what was saved for it.

CREATE TABLE pending_replies (
    id             INTEGER PRIMARY KEY,  -- the interaction's id
    application_id INTEGER NOT NULL,
    token          TEXT    NOT NULL,     -- answers as the bot until expires_at: never logged
    expires_at     REAL    NOT NULL,     -- Unix time
    channel_id     INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    user_name      TEXT    NOT NULL
);

-- The turns committed for a pending reply, in the same transaction as the turns themselves.
CREATE TABLE pending_reply_turns (
    reply_id INTEGER NOT NULL REFERENCES pending_replies (id) ON DELETE CASCADE,
    turn_id  INTEGER NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    PRIMARY KEY (reply_id, turn_id)
);
