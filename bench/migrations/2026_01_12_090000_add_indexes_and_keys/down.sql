ALTER TABLE attachments DROP CONSTRAINT attachments_comment_fk, DROP CONSTRAINT attachments_user_fk;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_user_fk;
ALTER TABLE comments DROP CONSTRAINT comments_project_fk, DROP CONSTRAINT comments_user_fk;
ALTER TABLE events DROP CONSTRAINT events_project_fk, DROP CONSTRAINT events_user_fk;
ALTER TABLE projects DROP CONSTRAINT projects_owner_fk;
DROP INDEX users_email_key, users_uuid_key, users_status_idx, users_settings_gin, projects_owner_idx,
    events_user_created_idx, events_kind_idx, events_payload_gin, comments_user_idx, comments_tags_gin,
    audit_log_user_created_idx, attachments_user_idx;
