-- Keys belong to services (ARCHITECTURE §11). Existing keys get no services: every service,
-- as before. Existing rows keep their ids; key_id is NULL for rows written before this.
ALTER TABLE "api_keys" ADD COLUMN "services" text[] DEFAULT '{}' NOT NULL;--> statement-breakpoint
ALTER TABLE "events" ADD COLUMN "key_id" text;--> statement-breakpoint
-- Partitions a retention pass detached and has not dropped yet are archived from their own
-- table with the same column list, so they get the column too.
DO $$
DECLARE t text;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            WHERE c.relkind = 'r' AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$' AND NOT c.relispartition
  LOOP
    EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS key_id text', t);
  END LOOP;
END $$;--> statement-breakpoint
-- Ids are unique per service: one service's id can never make another's event a duplicate.
-- On the partitioned table, both statements apply to every partition (events_default too).
ALTER TABLE "events" DROP CONSTRAINT "events_occurred_at_id_pk";--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_occurred_at_id_service_pk" PRIMARY KEY ("occurred_at","id","service");
