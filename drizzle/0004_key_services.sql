-- Keys belong to services (ARCHITECTURE §11). Existing keys get no services: every service,
-- as before. Existing rows keep their ids; key_id is NULL for rows written before this.
ALTER TABLE "api_keys" ADD COLUMN "services" text[] DEFAULT '{}' NOT NULL;--> statement-breakpoint
ALTER TABLE "events" ADD COLUMN "key_id" text;--> statement-breakpoint
-- Ids are unique per service: one service's id can never make another's event a duplicate.
-- On the partitioned table, both statements apply to every partition (events_default too).
ALTER TABLE "events" DROP CONSTRAINT "events_occurred_at_id_pk";--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_occurred_at_id_service_pk" PRIMARY KEY ("occurred_at","id","service");
