-- lz4 TOAST compression for events.metadata (ARCHITECTURE §16): metadata values large enough
-- to be compressed (about 2 kB and over) are compressed and read back faster than with pglz.
-- Rows already stored keep their pglz values until rewritten; the setting is per partition,
-- so every existing partition is changed too (new ones take it from `events`). A server older
-- than PostgreSQL 14, or built without lz4, keeps pglz: the migration says so and goes on.
DO $$
DECLARE
  part regclass;
BEGIN
  IF current_setting('server_version_num')::int < 140000 THEN
    RAISE NOTICE 'events.metadata keeps pglz: lz4 TOAST compression needs PostgreSQL 14 or later';
    RETURN;
  END IF;
  BEGIN
    EXECUTE 'ALTER TABLE events ALTER COLUMN metadata SET COMPRESSION lz4';
  EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'events.metadata keeps pglz: this PostgreSQL is built without lz4';
    RETURN;
  END;
  FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'events'::regclass LOOP
    EXECUTE format('ALTER TABLE %s ALTER COLUMN metadata SET COMPRESSION lz4', part);
  END LOOP;
END $$;
