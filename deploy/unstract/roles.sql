-- dashboard-metrics beside an existing Unstract installation: two roles in Unstract's database.
--
--   dashboard_metrics_reader  reads Unstract's tables (schema unstract) and nothing else;
--   dashboard_metrics         owns the schema dashboard_metrics (rollups, aggregator_state, the
--                             Alembic version) and has no privilege on Unstract's tables.
--
-- Run it once as Unstract's database owner (safe to run again; it also resets the passwords):
--
--   docker exec -i unstract-db psql -U unstract_dev -d unstract_db -v ON_ERROR_STOP=1 \
--     -v reader_password="$METRICS_READER_PASSWORD" \
--     -v writer_password="$METRICS_WRITER_PASSWORD" < deploy/unstract/roles.sql
--
-- Undo (see the README, "Replacing Unstract's dashboard_metrics"):
--   DROP SCHEMA dashboard_metrics CASCADE;
--   DROP OWNED BY dashboard_metrics_reader; DROP ROLE dashboard_metrics_reader;
--   DROP ROLE dashboard_metrics;

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE dashboard_metrics_reader LOGIN PASSWORD %L', :'reader_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashboard_metrics_reader') \gexec
SELECT format('CREATE ROLE dashboard_metrics LOGIN PASSWORD %L', :'writer_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashboard_metrics') \gexec
ALTER ROLE dashboard_metrics_reader PASSWORD :'reader_password';
ALTER ROLE dashboard_metrics PASSWORD :'writer_password';

-- The source: read-only, in Unstract's schema, now and for tables its migrations add later.
GRANT CONNECT ON DATABASE :"DBNAME" TO dashboard_metrics_reader, dashboard_metrics;
GRANT USAGE ON SCHEMA unstract TO dashboard_metrics_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA unstract TO dashboard_metrics_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA unstract GRANT SELECT ON TABLES TO dashboard_metrics_reader;
ALTER ROLE dashboard_metrics_reader SET default_transaction_read_only = on;

-- The rollups: a schema of their own, never Unstract's (which has its own event_metrics_*).
-- `migrate` creates it (CREATE SCHEMA IF NOT EXISTS needs CREATE on the database); it is
-- created here too so that it is owned by the rollup role whoever runs `migrate` first.
GRANT CREATE ON DATABASE :"DBNAME" TO dashboard_metrics;
CREATE SCHEMA IF NOT EXISTS dashboard_metrics AUTHORIZATION dashboard_metrics;
ALTER ROLE dashboard_metrics SET search_path = dashboard_metrics;
