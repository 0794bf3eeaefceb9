#!/usr/bin/env bash
# Runs the external-broker tests (crates/broker/tests/external.rs) against a
# throwaway Debian mosquitto 2: anonymous, 127.0.0.1 only, no persistence.
#
#   crates/broker/scripts/mosquitto-check.sh [extra cargo test args]
#
# Needs: apt-get install -y mosquitto mosquitto-clients (the script installs
# them when missing and it runs as root).
set -euo pipefail

if ! command -v mosquitto >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients
fi

workdir=$(mktemp -d)
# A free port: bind port 0, read it back, release it (tiny race, fine here).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat >"$workdir/mosquitto.conf" <<CONF
# One MQTT 3.1.1/5 listener on loopback, no authentication (tests only).
listener $port 127.0.0.1
allow_anonymous true
# Nothing on disk: each run starts empty.
persistence false
# QoS 1/2 messages in flight per client (0 = unlimited).
max_inflight_messages 100
# Per-client queue beyond the in-flight window; the default (1000) drops
# messages of a burst to a slow or offline subscriber.
max_queued_messages 100000
log_dest stderr
log_type error
log_type warning
CONF

mosquitto -c "$workdir/mosquitto.conf" 2>"$workdir/mosquitto.log" &
mosquitto_pid=$!
cleanup() {
    kill "$mosquitto_pid" 2>/dev/null || true
    wait "$mosquitto_pid" 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT

for _ in $(seq 50); do
    if mosquitto_pub -V mqttv5 -h 127.0.0.1 -p "$port" -t vigie/ping -m up -q 1 2>/dev/null; then break; fi
    sleep 0.1
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/main/target}
status=0
VIGIE_TEST_MQTT_ADDR="127.0.0.1:$port" \
    cargo test -p vigie-broker --test external "$@" -- --ignored --nocapture --test-threads=1 || status=$?
cat "$workdir/mosquitto.log" >&2
exit $status
