-- The playbook's manual rollback (Method 2), as a down script.
DROP TABLE IF EXISTS new_feature_table;
ALTER TABLE users DROP COLUMN new_field;
UPDATE users SET status = 'active' WHERE status = 'migrated';
