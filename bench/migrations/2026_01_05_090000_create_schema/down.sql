DROP TABLE attachments, audit_log, comments, events, projects, users;
