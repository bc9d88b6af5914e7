"""PostgreSQL tools: pg_dump archives, pg_restore, the database swap, sessions, schema reading, the wrong-
database guard, migration_history rows, row merges from a backup, the checks.
"""
