-- Tracking-plan violations of an event stored under `warn` (ARCHITECTURE §14): [{path, code,
-- message}], NULL when it had none. No index: rows are found by service and time first, and
-- `GET /v1/events?violations=true` filters those.
ALTER TABLE "events" ADD COLUMN "violations" jsonb;--> statement-breakpoint
-- Partitions a retention pass detached and has not dropped yet are archived from their own
-- table with the events table's column list, so they get the column too.
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            WHERE c.relkind = 'r' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$' AND NOT c.relispartition
  LOOP
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS violations jsonb', t);
  END LOOP;
END $$;
