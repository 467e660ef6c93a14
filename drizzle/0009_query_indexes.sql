-- GET /v1/events by type, by service and type, and by violations, newest first: without these
-- a type with few events was found by scanning every newer row (0.6 s at 10M rows for a type
-- with none; < 1 ms with them, test/bench/large.ts). Built with the table locked for writes:
-- about 10 s per index per 10M rows here; the workers wait (and spill to their checkpoint
-- past BATCH_TIMEOUT), the API keeps buffering.
CREATE INDEX "events_type_occurred_at_idx" ON "events" USING btree ("type","occurred_at","id","service");--> statement-breakpoint
CREATE INDEX "events_service_type_occurred_at_idx" ON "events" USING btree ("service","type","occurred_at","id");--> statement-breakpoint
CREATE INDEX "events_violations_occurred_at_idx" ON "events" USING btree ("occurred_at","id","service") WHERE "events"."violations" IS NOT NULL;