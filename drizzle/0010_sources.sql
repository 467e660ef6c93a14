CREATE TABLE "sources" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"service" text NOT NULL,
	"settings" jsonb NOT NULL,
	"secrets" text,
	"paused" boolean DEFAULT false NOT NULL,
	"position" jsonb,
	"rows_read" bigint DEFAULT 0 NOT NULL,
	"events_accepted" bigint DEFAULT 0 NOT NULL,
	"events_duplicate" bigint DEFAULT 0 NOT NULL,
	"events_rejected" bigint DEFAULT 0 NOT NULL,
	"events_skipped" bigint DEFAULT 0 NOT NULL,
	"last_rejection" jsonb,
	"last_run_at" timestamp with time zone,
	"last_success_at" timestamp with time zone,
	"last_error" text,
	"last_error_at" timestamp with time zone,
	"failures" integer DEFAULT 0 NOT NULL,
	"next_run_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_holder" text,
	"lease_expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "sources_name_idx" ON "sources" USING btree ("name");