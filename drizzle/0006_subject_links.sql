-- Links between subject ids (ARCHITECTURE §12): alias events and events carrying both a userId and
-- an anonymousId, written by the workers; erasure, export and opt-out follow them transitively.
-- opt_outs.via: the subject whose opt-out covered this linked id (NULL: its own opt-out).
CREATE TABLE "subject_links" (
	"from_id" text NOT NULL,
	"to_id" text NOT NULL,
	"via" text NOT NULL,
	"key_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "subject_links_from_id_to_id_pk" PRIMARY KEY("from_id","to_id")
);
--> statement-breakpoint
ALTER TABLE "opt_outs" ADD COLUMN "via" text;--> statement-breakpoint
CREATE INDEX "subject_links_to_idx" ON "subject_links" USING btree ("to_id","from_id");
