-- The application role: what the portal's login role should be granted in production
-- (`GRANT portal_app TO portal_login;`, see deploy/). Besides the triggers, the audit log is
-- protected by privileges: the application may read and append audit events, never change them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portal_app') THEN
        CREATE ROLE portal_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    -- Another database of the same cluster created it at the same moment.
    NULL;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO portal_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM portal_app;
