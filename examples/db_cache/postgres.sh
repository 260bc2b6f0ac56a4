#!/usr/bin/env bash
# Starts Debian's PostgreSQL (the newest installed postgresql-NN, cluster "main") on
# its defaults, 127.0.0.1:5432 (and ::1) and the unix socket in /var/run/postgresql,
# and creates the role and database examples/db_cache and tests/suite/db_cache.rs use:
#   host=127.0.0.1 user=ferrocache password=ferrocache dbname=ferrocache
# Idempotent; run as root (sudo). Needs `apt-get install postgresql`. Stop it with
#   pg_ctlcluster <version> main stop
set -euo pipefail
cd /  # runuser postgres: a directory it may enter

ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if [ -z "$ver" ]; then
    echo "postgres.sh: no PostgreSQL installed (apt-get install postgresql)" >&2
    exit 1
fi
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
    pg_createcluster "$ver" main
fi
if ! pg_lsclusters -h | awk '$1=="'"$ver"'" && $2=="main" {print $4}' | grep -qx online; then
    pg_ctlcluster "$ver" main start
fi
for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
done
pg_isready -h 127.0.0.1 -p 5432

as_postgres() { runuser -u postgres -- "$@"; }
as_postgres psql -q -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferrocache') THEN
        CREATE ROLE ferrocache LOGIN PASSWORD 'ferrocache';
    END IF; END \$\$;"
if [ "$(as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferrocache'")" != 1 ]; then
    as_postgres createdb -O ferrocache ferrocache
fi
echo "postgres.sh: PostgreSQL $ver on 127.0.0.1:5432, database ferrocache (user ferrocache)"
