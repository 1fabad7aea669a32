-- Steering a story: versions of a part (retry, swipes, edits), undo with who and when, memory and
-- author's note, ending a story, and who asked for each model part.

-- A part's versions: retry writes a new one, an edit too; turns.text is the chosen one's text, so
-- everything that reads the story reads the chosen version. A turn with no rows here has one
-- version: itself.
CREATE TABLE turn_versions (
    turn_id    INTEGER NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    number     INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    settings   TEXT,     -- JSON, as turns.settings
    notes      BLOB,     -- as turn_notes.notes
    edited_by  INTEGER,  -- NULL: as written (by the model, or by the member for a line)
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (turn_id, number)
);

ALTER TABLE turns ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE turns ADD COLUMN edited_by INTEGER;     -- who wrote the chosen version, if edited
ALTER TABLE turns ADD COLUMN requested_by INTEGER;  -- the member who asked for a model part
ALTER TABLE turns ADD COLUMN author_name TEXT;      -- the member's display name then, for export
ALTER TABLE turns ADD COLUMN deleted_by INTEGER;    -- undo: who
ALTER TABLE turns ADD COLUMN deleted_at TEXT;       -- undo: when

ALTER TABLE stories ADD COLUMN memory TEXT NOT NULL DEFAULT '';  -- pinned before the story
ALTER TABLE stories ADD COLUMN note TEXT NOT NULL DEFAULT '';    -- a few turns before the end
ALTER TABLE stories ADD COLUMN ended_at TEXT;                    -- /story end
