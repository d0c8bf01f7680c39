-- A session's request logs by session id, in order (docs/sessions.md); only rows that belong to
-- a session are indexed.
CREATE INDEX request_logs_session ON request_logs (session_id, log_id) WHERE session_id IS NOT NULL;
