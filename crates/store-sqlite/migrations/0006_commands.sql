-- Commands sent to equipment, each a JSON body keyed by its id, with the
-- entity and the issue time beside it for the panel's "latest commands of
-- this asset" and the state for the ones still awaiting an answer.
CREATE TABLE commands (
    id        TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    open      INTEGER NOT NULL, -- 1 while sent and unanswered
    body      TEXT NOT NULL
);
CREATE INDEX commands_by_entity ON commands (entity_id, issued_at);
CREATE INDEX commands_open ON commands (open) WHERE open = 1;
