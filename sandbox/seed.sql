-- Example data for the sandbox's app database, loaded after 2025_10_20_120001 and before
-- 2025_10_20_150000 (the migration the playbook rolls back). Deterministic: the same rows every time.
INSERT INTO users (email, full_name, status, created_at)
SELECT format('%s.%s%s@example.com', lower(first), lower(last), g),
       first || ' ' || last,
       CASE WHEN g % 7 = 0 THEN 'suspended' ELSE 'active' END,
       timestamptz '2025-01-01 09:00+00' + make_interval(hours => g * 17)
FROM generate_series(1, 320) AS g,
     LATERAL (SELECT (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Ken', 'Margaret', 'Linus',
                            'Frances', 'Donald', 'Radia', 'Guido'])[1 + g % 12] AS first,
                     (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Thompson', 'Hamilton',
                            'Torvalds', 'Allen', 'Knuth', 'Perlman', 'Rossum', 'Ritchie'])[1 + (g * 5) % 13] AS last
             ) AS names;

INSERT INTO projects (owner_id, name, created_at, archived_at)
SELECT u.id,
       (ARRAY['billing', 'search', 'onboarding', 'analytics', 'mobile', 'api'])[1 + (u.id + p) % 6] || '-' || p,
       u.created_at + make_interval(days => p * 3),
       CASE WHEN (u.id + p) % 11 = 0 THEN u.created_at + make_interval(days => 90) END
FROM users AS u, generate_series(1, 3) AS p
WHERE (u.id + p) % 2 = 0;
