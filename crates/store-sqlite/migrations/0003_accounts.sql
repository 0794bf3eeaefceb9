-- Accounts, API credentials and console sessions, each a JSON body keyed by
-- its identifier (the records are small and read through the server's caches).
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE api_credentials (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account    TEXT NOT NULL,
    expires_at INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    body       TEXT NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account);
