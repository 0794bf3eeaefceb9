-- Automation rules saved through the API. Every version is a row, never
-- rewritten: a firing names its rule's version, and the record shows what
-- that version said. A retiring version ends the rule.
CREATE TABLE rule_versions (
    id       TEXT NOT NULL,
    version  INTEGER NOT NULL,
    saved_at INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    retired  INTEGER NOT NULL,
    body     TEXT NOT NULL,    -- the RuleRecord as JSON
    PRIMARY KEY (id, version)
);
