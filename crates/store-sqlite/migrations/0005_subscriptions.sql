-- NGSI-LD subscriptions, each a JSON body keyed by its id, and the outbox of
-- notifications not delivered yet: a notification is committed in the same
-- transaction as the change that caused it and deleted once delivered, so a
-- crash or a dead endpoint loses none.
CREATE TABLE subscriptions (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE pending_notifications (
    seq             INTEGER PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    created_at      INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    data            TEXT NOT NULL     -- the entity as the subscription renders it
);
CREATE INDEX pending_by_subscription ON pending_notifications (subscription_id, seq);
