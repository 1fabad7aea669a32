-- How sure the model was of each token of a part, and what it almost wrote: kept with the part for
-- its explanation (bot/explain.py packs it: zlib-compressed JSON, about 1 KB a part).

CREATE TABLE turn_notes (
    turn_id INTEGER PRIMARY KEY REFERENCES turns (id) ON DELETE CASCADE,
    notes   BLOB    NOT NULL
);
