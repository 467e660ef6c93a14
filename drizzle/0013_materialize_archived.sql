ALTER TABLE "materializations" ADD COLUMN "rebuild_archived_from" text;--> statement-breakpoint
ALTER TABLE "materializations" ADD COLUMN "last_rebuild_archived_from" text;