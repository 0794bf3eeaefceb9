-- The audit trail: one row per audited action, hash-chained (see
-- vigie_core::audit). Append-only: Vigie has no UPDATE or DELETE of it, and
-- the triggers below refuse them, which stops accidents and casual edits. A
-- determined attacker can drop the triggers; the hash chain and the anchor
-- file (`<db>.audit-head`) are what detect that (`vigie audit verify`).
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY, -- 1, 2, 3... without gap
    at         INTEGER NOT NULL,    -- microseconds since the Unix epoch, UTC
    actor      TEXT NOT NULL,
    role       TEXT,
    credential TEXT NOT NULL,
    source     TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    outcome    TEXT NOT NULL,       -- ok | denied | failed
    detail     TEXT,
    before     TEXT,                -- JSON
    after      TEXT,                -- JSON
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, at);
CREATE INDEX audit_action ON audit (action, at);
CREATE INDEX audit_target ON audit (target);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;
