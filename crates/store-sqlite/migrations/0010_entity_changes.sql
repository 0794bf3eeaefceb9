-- Changes to entities that already have a row, appended in commit order
-- instead of rewriting the row: a row rewritten in place costs a page of
-- log wherever it lies, and under single-attribute updates at random over
-- the city that was most of what a commit wrote. The write connection folds
-- this log into `entities` every second or so (the latest change of each
-- entity wins), before deleting any entity, and after migrating at start.
-- Readers of `entities` bodies overlay it (see `entities_page`); keys, ids
-- and existence are always right in `entities` itself, since creations and
-- deletions are written there directly.
CREATE TABLE entity_changes (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    scope       TEXT,
    body        TEXT NOT NULL,
    modified_at INTEGER
);
