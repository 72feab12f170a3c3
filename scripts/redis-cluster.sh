#!/usr/bin/env bash
# A local Redis Cluster for trying flagcache on: three primaries (and, with REPLICAS=1, one
# replica each) on 127.0.0.1, ports BASE.. (default 7000), data in target/redis-cluster/.
#
#   scripts/redis-cluster.sh start     # prints the REDIS_CLUSTER value to use
#   REDIS_CLUSTER=redis://127.0.0.1:7000,redis://127.0.0.1:7001 \
#       cargo run --release --example evaluator
#   scripts/redis-cluster.sh stop
#
# Needs redis-server and redis-cli (Redis 7 or later, or Valkey). The tests start clusters of
# their own on free ports (tests/support/redis_cluster.rs); this one is for people.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE:-7000}
REPLICAS=${REPLICAS:-0}
COUNT=$((3 * (1 + REPLICAS)))
DIR=target/redis-cluster

ports() { seq "$BASE" $((BASE + COUNT - 1)); }

case "${1:-}" in
start)
  mkdir -p "$DIR"
  for port in $(ports); do
    mkdir -p "$DIR/$port"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --appendonly no --save "" --dir "$DIR/$port" --logfile redis.log \
      --pidfile "$PWD/$DIR/$port/redis.pid"
  done
  for port in $(ports); do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
  done
  nodes=$(for port in $(ports); do printf '127.0.0.1:%s ' "$port"; done)
  # shellcheck disable=SC2086 # one argument per node
  redis-cli --cluster create $nodes --cluster-replicas "$REPLICAS" --cluster-yes >/dev/null
  until redis-cli -p "$BASE" cluster info | grep -q 'cluster_state:ok'; do sleep 0.1; done
  seeds=$(for port in $(ports); do printf 'redis://127.0.0.1:%s,' "$port"; done)
  echo "cluster up; REDIS_CLUSTER=${seeds%,}"
  ;;
stop)
  for port in $(ports); do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$DIR"
  echo "cluster stopped"
  ;;
*)
  echo "usage: $0 start|stop   (env: BASE=7000, REPLICAS=0)" >&2
  exit 2
  ;;
esac
