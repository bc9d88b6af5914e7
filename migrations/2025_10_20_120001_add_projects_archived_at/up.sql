-- Last known-good version in the playbook's scenario.
ALTER TABLE projects ADD COLUMN archived_at timestamptz;
