-- The audit_events table of kubernaut's migration 013, partitioned by month on
-- event_date. Differences on purpose:
--   * event_date is the UTC day of event_timestamp, set by DataStorage and held
--     by a CHECK instead of a session-time-zone trigger, so a retried event
--     always lands on the same primary key (event_id, event_date);
--   * event_version is VARCHAR(20), the length the API accepts;
--   * no parent foreign key: its parent_event_date half is never set, so it
--     never checked anything;
--   * partitions are created by DataStorage at start and as time moves on.

CREATE TABLE audit_events (
    event_id          UUID         NOT NULL DEFAULT gen_random_uuid(),
    event_version     VARCHAR(20)  NOT NULL DEFAULT '1.0',
    event_timestamp   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    event_date        DATE         NOT NULL,
    event_type        VARCHAR(100) NOT NULL,
    event_category    VARCHAR(50)  NOT NULL,
    event_action      VARCHAR(50)  NOT NULL,
    event_outcome     VARCHAR(20)  NOT NULL,
    actor_type        VARCHAR(50)  NOT NULL,
    actor_id          VARCHAR(255) NOT NULL,
    actor_ip          INET,
    resource_type     VARCHAR(100) NOT NULL,
    resource_id       VARCHAR(255) NOT NULL,
    resource_name     VARCHAR(255),
    correlation_id    VARCHAR(255) NOT NULL,
    parent_event_id   UUID,
    parent_event_date DATE,
    trace_id          VARCHAR(255),
    span_id           VARCHAR(255),
    namespace         VARCHAR(253),
    cluster_name      VARCHAR(255),
    event_data        JSONB        NOT NULL,
    event_metadata    JSONB,
    severity          VARCHAR(20),
    duration_ms       INTEGER,
    error_code        VARCHAR(50),
    error_message     TEXT,
    retention_days    INTEGER      DEFAULT 2555,
    is_sensitive      BOOLEAN      DEFAULT false,
    PRIMARY KEY (event_id, event_date),
    CONSTRAINT audit_events_event_date_is_utc_day
        CHECK (event_date = (event_timestamp AT TIME ZONE 'UTC')::date)
) PARTITION BY RANGE (event_date);

CREATE INDEX idx_audit_events_event_timestamp ON audit_events (event_timestamp DESC);
CREATE INDEX idx_audit_events_correlation_id ON audit_events (correlation_id, event_timestamp DESC);
CREATE INDEX idx_audit_events_event_type ON audit_events (event_type, event_timestamp DESC);
CREATE INDEX idx_audit_events_resource ON audit_events (resource_type, resource_id, event_timestamp DESC);
CREATE INDEX idx_audit_events_actor ON audit_events (actor_type, actor_id, event_timestamp DESC);
CREATE INDEX idx_audit_events_outcome ON audit_events (event_outcome, event_timestamp DESC);
CREATE INDEX idx_audit_events_event_date ON audit_events (event_date);
CREATE INDEX idx_audit_events_event_data_gin ON audit_events USING GIN (event_data);

-- Append-only for the application role, when the deployment has one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'datastorage_app') THEN
        GRANT SELECT, INSERT ON audit_events TO datastorage_app;
    END IF;
END
$$;
