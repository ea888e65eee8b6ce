#!/bin/bash
# Runs once when the primary is initialised: the portal's two roles (README "Production").
#   portal_owner  owns the database, so it may create the schema: `portal migrate` runs as it
#   portal_web    logs in to serve; a member of portal_app, which the migrations grant
#                 reading and appending, never changing, the audit log
# Neither is a superuser: a superuser passes every privilege check and the grants would mean
# nothing. portal_app is created here so that portal_web can join it before the first
# migration; migration 0006 then finds it and only grants.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v owner_password="$(cat /run/secrets/owner_password)" \
     -v web_password="$(cat /run/secrets/web_password)" <<'SQL'
CREATE ROLE portal_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE portal_app NOLOGIN;
CREATE ROLE portal_web LOGIN PASSWORD :'web_password' IN ROLE portal_app;
ALTER DATABASE portal OWNER TO portal_owner;
SQL
