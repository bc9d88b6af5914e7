-- Drops a table with a foreign key to users (ACCESS EXCLUSIVE on users), drops columns, puts most
-- users back to 'active' and reverts the event-kind backfill: what real down scripts do.
DROP TABLE user_badges;
ALTER TABLE users DROP COLUMN plan_tier, DROP COLUMN onboarding_state;
UPDATE users SET status = 'active' WHERE status = 'migrated';
UPDATE events SET kind = replace(kind, '_', '.') WHERE kind LIKE '%\_%';
