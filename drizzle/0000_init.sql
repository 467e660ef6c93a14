CREATE TABLE "api_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"key_hash" text NOT NULL,
	"key_prefix" text NOT NULL,
	"scopes" text[] NOT NULL,
	"rate_limit_per_minute" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" uuid NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"service" text NOT NULL,
	"type" text NOT NULL,
	"user_id" text,
	"message" text,
	"metadata" jsonb,
	CONSTRAINT "events_occurred_at_id_pk" PRIMARY KEY("occurred_at","id")
) PARTITION BY RANGE ("occurred_at");
--> statement-breakpoint
-- Hand-written: drizzle-kit cannot express partitioning. Monthly partitions events_YYYY_MM are
-- created by the maintenance step (src/store/partitions.ts); this one catches anything outside
-- them and should stay empty.
CREATE TABLE "events_default" PARTITION OF "events" DEFAULT;
--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_key_hash_idx" ON "api_keys" USING btree ("key_hash");--> statement-breakpoint
CREATE INDEX "api_keys_active_idx" ON "api_keys" USING btree ("created_at") WHERE "api_keys"."revoked_at" IS NULL;--> statement-breakpoint
CREATE INDEX "events_service_occurred_at_idx" ON "events" USING btree ("service","occurred_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "events_user_id_idx" ON "events" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "events_received_at_brin" ON "events" USING brin ("received_at");