-- The event fields kubernaut added in 2026 (its migrations 008, 010, 014 and 017).
--   * cluster_name is renamed cluster_id, values kept. The partial index serves
--     the cluster_id filter and leaves out the many events that have none.
--   * retention_days (1..2555) and is_sensitive are always set from now on.
--     Rows written before got the column defaults (2555, false) at insert; the
--     UPDATEs cover rows written by hand, so that NOT NULL holds for every row.
--   * actor_ip, parent_event_date, error_code and error_message have existed
--     since 0001 and are now written; event_data's GIN index (0001) serves the
--     detail_key/detail_value filter.

ALTER TABLE audit_events RENAME COLUMN cluster_name TO cluster_id;

CREATE INDEX idx_audit_events_cluster_id ON audit_events (cluster_id, event_timestamp DESC)
    WHERE cluster_id IS NOT NULL;

UPDATE audit_events SET retention_days = 2555 WHERE retention_days IS NULL;
UPDATE audit_events SET is_sensitive = false WHERE is_sensitive IS NULL;

ALTER TABLE audit_events
    ALTER COLUMN retention_days SET NOT NULL,
    ALTER COLUMN is_sensitive SET NOT NULL,
    ADD CONSTRAINT audit_events_retention_days_range CHECK (retention_days BETWEEN 1 AND 2555);
