#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ where they are installed but down (../shared/SERVICES.md).
# A service that is not installed is reported and left alone: the tests that need it skip
# with its name, and fail instead on CI (CI=true).
set -u

up() { # name, check command, start command
  local name=$1 check=$2 start=$3
  if eval "$check" >/dev/null 2>&1; then
    return
  fi
  local binary=${start%% *}
  if ! command -v "$binary" >/dev/null 2>&1; then
    echo "services: $name is not installed here; the tests that need it will skip."
    return
  fi
  echo "services: $name is down; starting it."
  eval "$start" >/dev/null 2>&1 || echo "services: could not start $name."
  for _ in $(seq 1 30); do
    eval "$check" >/dev/null 2>&1 && return
    sleep 1
  done
  echo "services: $name did not come up within 30 s."
}

up PostgreSQL "pg_isready -q -h 127.0.0.1 -p 5432" \
  "pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
up Redis "redis-cli -h 127.0.0.1 -p 6379 ping" \
  "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
up RabbitMQ "rabbitmq-diagnostics -q ping" "rabbitmq-server -detached"
exit 0
