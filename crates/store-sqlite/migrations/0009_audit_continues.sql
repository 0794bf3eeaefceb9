-- The audit trail has no gap and no fork, whoever writes to this file: a
-- record must follow the last one. (Vigie checks it before appending too;
-- this holds for any other writer of the file as well.)
CREATE TRIGGER audit_continues BEFORE INSERT ON audit
WHEN NEW.seq != coalesce((SELECT max(seq) FROM audit), 0) + 1
BEGIN
    SELECT RAISE(ABORT, 'an audit record must continue the trail');
END;
