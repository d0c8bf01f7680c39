-- The header that carries a provider's secret, when not the kind's default (Azure's api-key).
ALTER TABLE providers ADD COLUMN auth_header text NOT NULL DEFAULT '';
