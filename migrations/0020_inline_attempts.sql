-- A request whose only attempt produced the response keeps that attempt on its summary row
-- (ADR 0013): a row in request_log_attempts per request was ~15 % of Postgres's CPU per
-- capture-off request, and for the usual request it repeated the summary's provider, upstream
-- model and status. Retries, fallbacks and failed attempts still go to request_log_attempts.
--
-- attempt_duration_us is set exactly when the attempt is on the summary row.
ALTER TABLE request_logs
    ADD COLUMN attempt_duration_us bigint,
    ADD COLUMN attempt_ttfb_us bigint;

-- Every attempt of every request, wherever it is stored: read attempts from here.
CREATE VIEW request_log_attempts_all AS
    SELECT log_id, created_at, attempt_no, provider_key, upstream_model, status_code, error_kind,
           error_message, duration_us, ttfb_us, produced_response
    FROM request_log_attempts
    UNION ALL
    SELECT log_id, created_at, 1::smallint, provider_key, upstream_model, status_code, '', '',
           attempt_duration_us, attempt_ttfb_us, true
    FROM request_logs
    WHERE attempt_duration_us IS NOT NULL;
