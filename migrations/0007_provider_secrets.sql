-- Upstream secrets the control plane stores: AES-256-GCM sealed (nonce ‖ ciphertext ‖ tag),
-- bound to the provider's id; the key never enters the database (see provider_secrets.rs).
ALTER TABLE providers ADD COLUMN secret_sealed bytea;
