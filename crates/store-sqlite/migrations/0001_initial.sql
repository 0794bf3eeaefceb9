-- Live state: one row per entity, its whole NGSI-LD normalized body.
CREATE TABLE entities (
    key         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    scope       TEXT,
    body        TEXT NOT NULL,
    modified_at INTEGER
);

-- Every observed value. Keyed so that a redelivered message (MQTT QoS 1 is at
-- least once) replaces itself instead of counting twice. Exactly one of
-- num/txt/json holds the value.
CREATE TABLE history (
    entity_key  INTEGER NOT NULL,
    attribute   TEXT NOT NULL,
    observed_at INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    num         REAL,
    txt         TEXT,
    json        TEXT,
    unit_code   TEXT,
    PRIMARY KEY (entity_key, attribute, observed_at)
) WITHOUT ROWID;

CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    body      TEXT NOT NULL
);

CREATE TABLE dead_letters (
    seq         INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    source      TEXT NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    payload     BLOB NOT NULL
);
