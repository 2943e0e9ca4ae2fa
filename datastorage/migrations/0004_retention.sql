-- Retention and legal hold (kubernaut's retention package and its legal-hold
-- columns), read by datastorage/retention.py and datastorage/legalhold.py.
--   * An event is kept for the longer of its own retention_days and its
--     category's floor: the audit_retention_policies row, or the configured
--     default when there is none. The table starts empty on purpose: seeded rows
--     equal to the default would hide a lowered default for their categories.
--   * A legal hold is placed on a case (a correlation_id). It marks the case's
--     rows (the four legal_hold columns, the only ones the chain's immutability
--     trigger lets change); audit_legal_holds records every hold, in force or
--     released, and who placed and released it.
--   * retention_operations has one row per purge run; finished_at stays NULL
--     for a run that was cut off (a crash), error says why a run failed.

ALTER TABLE audit_events
    ADD COLUMN legal_hold           BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN legal_hold_reason    TEXT,
    ADD COLUMN legal_hold_placed_by TEXT,
    ADD COLUMN legal_hold_placed_at TIMESTAMPTZ;

CREATE TABLE audit_retention_policies (
    event_category VARCHAR(50) PRIMARY KEY,
    retention_days INTEGER     NOT NULL CHECK (retention_days BETWEEN 1 AND 2555),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE audit_legal_holds (
    hold_id        BIGINT       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    correlation_id VARCHAR(255) NOT NULL,
    reason         TEXT         NOT NULL,
    placed_by      VARCHAR(255) NOT NULL,
    placed_at      TIMESTAMPTZ  NOT NULL,
    released_by    VARCHAR(255),
    released_at    TIMESTAMPTZ,
    CONSTRAINT audit_legal_holds_release_is_complete CHECK ((released_by IS NULL) = (released_at IS NULL))
);

-- At most one hold in force per case; released ones stay as the record.
CREATE UNIQUE INDEX audit_legal_holds_in_force ON audit_legal_holds (correlation_id) WHERE released_at IS NULL;

CREATE TABLE retention_operations (
    operation_id       BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_date           DATE        NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    rows_deleted       BIGINT      NOT NULL DEFAULT 0,
    partitions_dropped TEXT[]      NOT NULL DEFAULT '{}',
    error              TEXT
);

-- The application role, when the deployment has one, may hold and release
-- cases and delete purged rows; dropping partitions needs the table's owner,
-- as creating them does.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'datastorage_app') THEN
        GRANT UPDATE (legal_hold, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at), DELETE
            ON audit_events TO datastorage_app;
        GRANT SELECT ON audit_retention_policies TO datastorage_app;
        GRANT SELECT, INSERT, UPDATE ON audit_legal_holds, retention_operations TO datastorage_app;
    END IF;
END
$$;
