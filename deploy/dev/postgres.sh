#!/usr/bin/env bash
# Starts the Debian PostgreSQL cluster for the test suite and prints the URL the tests use
# (CUSTODY_TEST_PG_URL). The role and password exist only for local tests.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main"' | grep -q .; then
  pg_createcluster "$ver" main >/dev/null 2>&1
fi
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || true
for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
as_pg psql -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'custody_test') THEN
    CREATE ROLE custody_test LOGIN PASSWORD 'custody_test' CREATEDB;
  END IF;
END $$;
SQL
as_pg psql -tAc "SELECT 1 FROM pg_database WHERE datname='custody_test'" | grep -q 1 \
  || as_pg createdb -O custody_test custody_test
echo "postgresql+psycopg://custody_test:custody_test@127.0.0.1:5432/custody_test"
