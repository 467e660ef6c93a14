CREATE TABLE "archives" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid,
	"month" text NOT NULL,
	"service" text NOT NULL,
	"source" text NOT NULL,
	"range_from" timestamp with time zone NOT NULL,
	"range_to" timestamp with time zone NOT NULL,
	"object_key" text NOT NULL,
	"manifest_key" text NOT NULL,
	"status" text NOT NULL,
	"row_count" bigint,
	"bytes" bigint,
	"sha256" text,
	"min_occurred_at" timestamp with time zone,
	"max_occurred_at" timestamp with time zone,
	"schema_version" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"verified_at" timestamp with time zone,
	"completed_at" timestamp with time zone,
	"restored_at" timestamp with time zone,
	"hold_until" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "retention_runs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"holder" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"rows_archived" bigint DEFAULT 0 NOT NULL,
	"bytes_archived" bigint DEFAULT 0 NOT NULL,
	"rows_deleted" bigint DEFAULT 0 NOT NULL,
	"rows_anonymized" bigint DEFAULT 0 NOT NULL,
	"partitions_dropped" text[] DEFAULT '{}' NOT NULL,
	"steps" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"error" text
);
--> statement-breakpoint
ALTER TABLE "events" ADD COLUMN "anonymized" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "archives_object_key_idx" ON "archives" USING btree ("object_key");--> statement-breakpoint
CREATE INDEX "archives_month_service_idx" ON "archives" USING btree ("month","service");--> statement-breakpoint
CREATE INDEX "archives_open_idx" ON "archives" USING btree ("status") WHERE "archives"."status" <> 'complete';--> statement-breakpoint
CREATE UNIQUE INDEX "retention_runs_one_running_idx" ON "retention_runs" USING btree ("status") WHERE "retention_runs"."status" = 'running';--> statement-breakpoint
CREATE INDEX "retention_runs_started_at_idx" ON "retention_runs" USING btree ("started_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "events_not_anonymized_idx" ON "events" USING btree ("occurred_at") WHERE NOT "events"."anonymized";