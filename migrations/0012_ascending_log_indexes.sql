-- The per-user, per-model and per-tag indexes were (…, created_at DESC): every insert landed at
-- the left edge of its key's range, where B-tree pages split the expensive way (the same cost
-- migration 0006 removed for the time index). Keyed on the UUIDv7 log id instead, inserts go to
-- the right edge of each range, and listings (ORDER BY log_id DESC) scan them backwards.
DROP INDEX IF EXISTS request_logs_user_created;
CREATE INDEX request_logs_user_log ON request_logs (user_id, log_id);
DROP INDEX IF EXISTS request_logs_model_created;
CREATE INDEX request_logs_model_log ON request_logs (model_key, log_id);
DROP INDEX IF EXISTS request_log_tags_kv;
CREATE INDEX request_log_tags_kv ON request_log_tags (key, value, log_id);
