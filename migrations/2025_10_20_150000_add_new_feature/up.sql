-- The migration the playbook rolls back: a new table, a new column, and a data change.
CREATE TABLE new_feature_table (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE users ADD COLUMN new_field text;
UPDATE users SET new_field = 'beta:' || id WHERE status = 'active';
INSERT INTO new_feature_table (user_id) SELECT id FROM users WHERE status = 'active';
UPDATE users SET status = 'migrated' WHERE status = 'active';
