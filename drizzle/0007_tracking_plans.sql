-- Tracking plans (ARCHITECTURE §14): every version of each (service, type)'s JSON Schema, never
-- rewritten (a delete sets deleted_at on the latest), and each service's mode. Small tables: a
-- process reads them whole at start, on every announced change and every PLANS_RELOAD_S.
CREATE TABLE "event_schemas" (
	"service" text NOT NULL,
	"type" text NOT NULL,
	"version" integer NOT NULL,
	"schema" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	"key_id" text,
	CONSTRAINT "event_schemas_service_type_version_pk" PRIMARY KEY("service","type","version")
);
--> statement-breakpoint
CREATE TABLE "plan_settings" (
	"service" text PRIMARY KEY NOT NULL,
	"mode" text NOT NULL CHECK ("mode" IN ('off', 'warn', 'reject')),
	"unknown_types" text NOT NULL CHECK ("unknown_types" IN ('allow', 'warn', 'reject')),
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
