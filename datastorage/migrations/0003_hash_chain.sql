-- A hash chain per correlation_id (README.md, "Hash chain"). Each event stored
-- from now on carries its place in its chain (chain_sequence, 1 for the first
-- event ever stored with its correlation_id), the hash of the event before it
-- (previous_event_hash, '' for the first) and its own hash; hash_algorithm says
-- whether the hash is keyed. The chain's order is storage order, not
-- event_timestamp: an event the DLQ stores late links to the chain as it is
-- then. Rows stored before this migration have no chain columns and are not
-- part of any chain.
--
-- audit_chain_heads keeps, per chain, how many events were ever chained, the
-- newest one, and what retention purged (always a prefix: the oldest events).
-- Verification needs it to notice the newest events deleted, which no link
-- could show.

ALTER TABLE audit_events
    ADD COLUMN chain_sequence      BIGINT,
    ADD COLUMN previous_event_hash TEXT,
    ADD COLUMN event_hash          TEXT,
    ADD COLUMN hash_algorithm      TEXT,
    -- All four or none. Lengths rather than patterns: checked on every row of every batch.
    ADD CONSTRAINT audit_events_chain_columns CHECK (
        (chain_sequence IS NULL AND previous_event_hash IS NULL AND event_hash IS NULL
            AND hash_algorithm IS NULL)
        OR (chain_sequence >= 1
            AND length(previous_event_hash) IN (0, 64)
            AND length(event_hash) = 64
            AND hash_algorithm IN ('hmac-sha256', 'sha256'))
    );

-- Verification reads a chain in order through this index, a few rows at a time.
CREATE INDEX idx_audit_events_chain ON audit_events (correlation_id, chain_sequence)
    WHERE chain_sequence IS NOT NULL;

CREATE TABLE audit_chain_heads (
    correlation_id       VARCHAR(255) PRIMARY KEY,
    event_count          BIGINT       NOT NULL CHECK (event_count >= 1),
    last_event_hash      TEXT         NOT NULL,
    last_event_id        UUID         NOT NULL,
    last_event_timestamp TIMESTAMPTZ  NOT NULL,
    purged_count         BIGINT       NOT NULL DEFAULT 0,
    purged_through_hash  TEXT         NOT NULL DEFAULT '',
    updated_at           TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT audit_chain_heads_purged_within_count CHECK (purged_count BETWEEN 0 AND event_count),
    CONSTRAINT audit_chain_heads_purged_hash_when_purged
        CHECK ((purged_count = 0) = (purged_through_hash = ''))
);

-- Stored events are immutable: an UPDATE naming any of these columns fails,
-- even one that would not change a value. Listed one by one so that columns
-- meant to change (legal hold, added later) stay updatable. A superuser can
-- still disable the trigger; verification then shows what changed.
CREATE FUNCTION audit_events_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit event % is immutable: its stored fields and hash chain cannot be updated',
        OLD.event_id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER audit_events_immutable
    BEFORE UPDATE OF
        event_id, event_version, event_timestamp, event_date, event_type, event_category,
        event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, resource_id,
        resource_name, correlation_id, parent_event_id, parent_event_date, trace_id, span_id,
        namespace, cluster_id, event_data, event_metadata, severity, duration_ms, error_code,
        error_message, retention_days, is_sensitive,
        chain_sequence, previous_event_hash, event_hash, hash_algorithm
    ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_update();

-- A head only moves forward: the insert path adds events (the count grows and
-- the newest event changes with it), retention adds purged events (the purged
-- count grows and purged_through_hash changes with it). Nothing else changes
-- and no head is ever deleted.
CREATE FUNCTION audit_chain_heads_only_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the chain head of % cannot be deleted', OLD.correlation_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.correlation_id <> OLD.correlation_id
        OR NEW.event_count < OLD.event_count
        OR NEW.purged_count < OLD.purged_count
        OR (NEW.event_count = OLD.event_count
            AND (NEW.last_event_hash, NEW.last_event_id, NEW.last_event_timestamp)
                IS DISTINCT FROM (OLD.last_event_hash, OLD.last_event_id, OLD.last_event_timestamp))
        OR (NEW.purged_count = OLD.purged_count
            AND NEW.purged_through_hash <> OLD.purged_through_hash)
    THEN
        RAISE EXCEPTION 'the chain head of % only moves forward: events added or purged', OLD.correlation_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_chain_heads_forward_only
    BEFORE UPDATE OR DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_heads_only_forward();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'datastorage_app') THEN
        GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO datastorage_app;
    END IF;
END
$$;
