-- The session store's table (the DDL of tower-sessions-sqlx-store 0.15), created by the schema
-- owner so that the portal can serve as the unprivileged application role.
CREATE SCHEMA IF NOT EXISTS tower_sessions;
CREATE TABLE IF NOT EXISTS tower_sessions.session (
    id text PRIMARY KEY NOT NULL,
    data bytea NOT NULL,
    expiry_date timestamptz NOT NULL
);
GRANT USAGE ON SCHEMA tower_sessions TO portal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tower_sessions.session TO portal_app;
