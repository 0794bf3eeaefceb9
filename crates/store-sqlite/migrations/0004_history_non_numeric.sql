-- The temporal API aggregates numbers straight from the `num` column; the
-- other values (strings, booleans, arrays, objects) are found through this
-- partial index, so a numeric series costs one index scan and no more, and
-- only non-numeric points pay for the extra index entry on write.
CREATE INDEX history_non_numeric ON history (entity_key, attribute, observed_at) WHERE num IS NULL;
