# Redis and PostgreSQL for the Helm chart's bundled datastores where no public registry is reachable (the
# air-gapped try-out of docs/install-kubernetes.md): Debian's redis-server and PostgreSQL 15 on the debootstrap-made
# base, behaving as the chart expects of redis:7 and postgres:16 (POSTGRES_USER/_PASSWORD/_DB/PGDATA on first
# start; `redis-server ...` as given). One image serves both (images.redis and images.postgresql). From the
# repository root, with nothing in the context but this file:
#   docker build -t spaceyard/datastores:bookworm - < docker/datastores.Dockerfile
# A registry-connected cluster keeps the chart's defaults (the official redis and postgres images).
ARG BASE_IMAGE=spaceyard/base:py3.11
FROM ${BASE_IMAGE}

# The users first, with the uids the chart runs them as (those of the official images).
RUN set -eux; \
    groupadd --system --gid 70 postgres; \
    useradd --system --uid 70 --gid 70 --home-dir /var/lib/postgresql --no-create-home postgres; \
    groupadd --system --gid 999 redis; \
    useradd --system --uid 999 --gid 999 --home-dir /data --no-create-home redis; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
    apt-get update; \
    apt-get install -y --no-install-recommends postgresql-15 redis-server; \
    rm -rf /var/lib/apt/lists/*

# The official postgres entrypoint's first start, in short: initdb with the password, the database, then serve.
RUN set -eux; \
    printf '%s\n' \
      '#!/bin/sh' \
      'set -eu' \
      '[ "${1:-}" = postgres ] || exec "$@"' \
      'if [ ! -s "$PGDATA/PG_VERSION" ]; then' \
      '  pw=$(mktemp); printf "%s\n" "$POSTGRES_PASSWORD" > "$pw"' \
      '  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256' \
      '  rm -f "$pw"' \
      '  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"' \
      '  pg_ctl -D "$PGDATA" -o "-c listen_addresses=" -w start' \
      '  [ "$POSTGRES_DB" = postgres ] || createdb -U "$POSTGRES_USER" "$POSTGRES_DB"' \
      '  pg_ctl -D "$PGDATA" -m fast -w stop' \
      'fi' \
      'exec postgres -D "$PGDATA" -c listen_addresses="*"' \
      > /usr/local/bin/docker-entrypoint.sh; \
    chmod 755 /usr/local/bin/docker-entrypoint.sh

ENV PATH=/usr/lib/postgresql/15/bin:$PATH
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
