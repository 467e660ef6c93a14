-- Segment's anonymousId (ARCHITECTURE §12): a column of its own, so compliance finds a subject
-- known only by it. NULL for every row written before.
ALTER TABLE "events" ADD COLUMN "anonymous_id" text;--> statement-breakpoint
-- Partitions a retention pass detached and has not dropped yet are archived from their own
-- table with the events table's column list, so they get the column too.
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            WHERE c.relkind = 'r' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$' AND NOT c.relispartition
  LOOP
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS anonymous_id text', t);
  END LOOP;
END $$;--> statement-breakpoint
CREATE INDEX "events_anonymous_id_occurred_at_idx" ON "events" USING btree ("anonymous_id","occurred_at","id") WHERE "anonymous_id" IS NOT NULL;
