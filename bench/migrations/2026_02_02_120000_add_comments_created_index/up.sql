-- Last known-good version: the rollback benchmarks go back to here.
CREATE INDEX comments_project_created_idx ON comments (project_id, created_at);
