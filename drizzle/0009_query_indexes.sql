-- GET /v1/events newest first by type, by violations, and by service in the listing's exact
-- order (id breaks ties): without them a type with few events was found by scanning every
-- newer row (0.8–1.2 s at 10M rows), and a rare service by filtering the primary key past a
-- burst of another service's rows (37 ms); with them every filter, a service and a type
-- together included, answers in about 2 ms (npm run bench -- --only e2e-large). Built with
-- the table locked for writes: about 10 s per index per 10M rows here; the workers wait (and
-- spill to their checkpoint once their breaker opens), the API keeps buffering.
DROP INDEX "events_service_occurred_at_idx";--> statement-breakpoint
CREATE INDEX "events_type_occurred_at_idx" ON "events" USING btree ("type","occurred_at","id","service");--> statement-breakpoint
CREATE INDEX "events_violations_occurred_at_idx" ON "events" USING btree ("occurred_at","id","service") WHERE "events"."violations" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "events_service_occurred_at_idx" ON "events" USING btree ("service","occurred_at","id");