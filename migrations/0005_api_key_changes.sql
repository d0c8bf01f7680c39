-- A change sequence on keys, so a control plane re-reads only the keys changed since its last
-- reload. Key-changing transactions take the api_keys version row lock first, so sequence order
-- is commit order and a reload never skips a change.
CREATE SEQUENCE api_key_change_seq;
ALTER TABLE api_keys ADD COLUMN change_seq bigint;
UPDATE api_keys SET change_seq = nextval('api_key_change_seq');
ALTER TABLE api_keys
    ALTER COLUMN change_seq SET NOT NULL,
    ALTER COLUMN change_seq SET DEFAULT nextval('api_key_change_seq');
CREATE INDEX api_keys_change_seq ON api_keys (change_seq);

CREATE FUNCTION weir_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := nextval('api_key_change_seq');
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_changed BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION weir_api_key_changed();

-- A user's logging opt-out is part of their keys' config.
CREATE FUNCTION weir_user_logging_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.request_logging_enabled IS DISTINCT FROM OLD.request_logging_enabled THEN
        UPDATE api_keys SET name = name WHERE owner_user_id = NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER users_logging_changed AFTER UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION weir_user_logging_changed();
