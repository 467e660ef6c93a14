CREATE TABLE "event_feed" (
	"xid" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"seq" bigserial NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"id" uuid NOT NULL,
	"service" text NOT NULL,
	CONSTRAINT "event_feed_xid_seq_pk" PRIMARY KEY("xid","seq")
);
--> statement-breakpoint
CREATE TABLE "mat_columns" (
	"materialization" text NOT NULL,
	"table_name" text NOT NULL,
	"column_name" text NOT NULL,
	"path" text[] NOT NULL,
	"kind" text NOT NULL,
	"wanted" text NOT NULL,
	"conflicts" bigint DEFAULT 0 NOT NULL,
	"conflict_sample" uuid,
	CONSTRAINT "mat_columns_materialization_table_name_column_name_pk" PRIMARY KEY("materialization","table_name","column_name")
);
--> statement-breakpoint
CREATE TABLE "mat_dirty_days" (
	"materialization" text NOT NULL,
	"service" text NOT NULL,
	"day" date NOT NULL,
	CONSTRAINT "mat_dirty_days_materialization_service_day_pk" PRIMARY KEY("materialization","service","day")
);
--> statement-breakpoint
CREATE TABLE "mat_event_tables" (
	"materialization" text NOT NULL,
	"event_name" text NOT NULL,
	"table_name" text NOT NULL,
	CONSTRAINT "mat_event_tables_materialization_event_name_pk" PRIMARY KEY("materialization","event_name")
);
--> statement-breakpoint
CREATE TABLE "materializations" (
	"name" text PRIMARY KEY NOT NULL,
	"spec" jsonb NOT NULL,
	"state" text DEFAULT 'building' NOT NULL,
	"cursor_xid" "xid8",
	"cursor_seq" bigint DEFAULT 0 NOT NULL,
	"rebuild_requested_at" timestamp with time zone DEFAULT now(),
	"applied_until" timestamp with time zone,
	"last_batch_at" timestamp with time zone,
	"last_rebuild_at" timestamp with time zone,
	"events_applied" bigint DEFAULT 0 NOT NULL,
	"last_error" text,
	"last_error_at" timestamp with time zone,
	"failures" integer DEFAULT 0 NOT NULL,
	"lease_holder" text,
	"lease_expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "mat_columns" ADD CONSTRAINT "mat_columns_materialization_materializations_name_fk" FOREIGN KEY ("materialization") REFERENCES "public"."materializations"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mat_dirty_days" ADD CONSTRAINT "mat_dirty_days_materialization_materializations_name_fk" FOREIGN KEY ("materialization") REFERENCES "public"."materializations"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mat_event_tables" ADD CONSTRAINT "mat_event_tables_materialization_materializations_name_fk" FOREIGN KEY ("materialization") REFERENCES "public"."materializations"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "mat_event_tables_table_idx" ON "mat_event_tables" USING btree ("materialization","table_name");--> statement-breakpoint
-- The kind of a JSON value as a typed column sees it (§17): boolean < bigint < double < text;
-- arrays are text (their JSON), objects are flattened by the caller, null has none. Numbers
-- beyond what a double holds are text, so a cast never fails.
CREATE FUNCTION tributary_kind(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
    WHEN 'boolean' THEN 'boolean'
    WHEN 'string' THEN 'text'
    WHEN 'array' THEN 'text'
    WHEN 'object' THEN 'object'
    WHEN 'number' THEN CASE
      WHEN v::text ~ '^-?[0-9]{1,19}$' AND v::text::numeric BETWEEN -9223372036854775808 AND 9223372036854775807
        THEN 'bigint'
      WHEN abs(v::text::numeric) > 1e308 OR (v::text::numeric <> 0 AND abs(v::text::numeric) < 1e-307) THEN 'text'
      ELSE 'double' END
  END
$$;
--> statement-breakpoint
-- Typed cells: the value when it fits the column's kind (a narrower kind widens), else NULL.
CREATE FUNCTION tributary_cell_boolean(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::text::boolean END
$$;
--> statement-breakpoint
CREATE FUNCTION tributary_cell_bigint(v jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE tributary_kind(v) WHEN 'boolean' THEN v::text::boolean::int::bigint WHEN 'bigint' THEN v::text::bigint END
$$;
--> statement-breakpoint
CREATE FUNCTION tributary_cell_double(v jsonb) RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE tributary_kind(v)
    WHEN 'boolean' THEN v::text::boolean::int::double precision
    WHEN 'bigint' THEN v::text::double precision
    WHEN 'double' THEN v::text::double precision END
$$;
--> statement-breakpoint
CREATE FUNCTION tributary_cell_text(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' WHEN 'object' THEN NULL WHEN 'null' THEN NULL ELSE v::text END
$$;
--> statement-breakpoint
-- A version that orders events by (occurred_at, received_at, id) as text: last writer wins by event time.
CREATE FUNCTION tributary_version(occurred_at timestamptz, received_at timestamptz, id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '.'
      || to_char(received_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '.' || id::text
$$;
--> statement-breakpoint
-- Merges two trait states ({trait: [version, value]}): each trait keeps the value of the
-- higher version. Commutative, associative and idempotent, so arrival order never matters.
CREATE FUNCTION tributary_lww_merge(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(jsonb_object_agg(k, CASE
           WHEN b -> k IS NULL THEN a -> k
           WHEN a -> k IS NULL THEN b -> k
           WHEN (a -> k ->> 0) >= (b -> k ->> 0) THEN a -> k
           ELSE b -> k END), '{}'::jsonb)
    FROM (SELECT jsonb_object_keys(coalesce(a, '{}')) UNION SELECT jsonb_object_keys(coalesce(b, '{}'))) AS keys(k)
$$;
--> statement-breakpoint
-- The values of a trait state.
CREATE FUNCTION tributary_lww_values(s jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(jsonb_object_agg(k, v -> 1), '{}'::jsonb) FROM jsonb_each(coalesce(s, '{}')) AS e(k, v)
$$;
