-- Alarms, each a JSON body keyed by its id; open ones (not closed) are what
-- the board and the evaluator load.
CREATE TABLE alarms (
    id        TEXT PRIMARY KEY,
    source    TEXT NOT NULL,
    raised_at INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    open      INTEGER NOT NULL, -- 1 until closed
    body      TEXT NOT NULL
);
CREATE INDEX alarms_open ON alarms (open, raised_at);
CREATE INDEX alarms_by_source ON alarms (source, raised_at);
