#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and starts dockerd when
# run as root on a machine without one; otherwise says exactly what is missing.
set -euo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
    echo "No Docker engine answers at DOCKER_HOST=$DOCKER_HOST; start it or unset DOCKER_HOST." >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "No Docker engine answers on /var/run/docker.sock. As root, run:" >&2
    echo "  apt-get update && apt-get install -y docker.io" >&2
    echo "  setsid dockerd >/var/log/dockerd.log 2>&1 &" >&2
    echo "or add your user to the 'docker' group of a running engine." >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    echo "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "starting dockerd (log: /var/log/dockerd.log)"
    setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
fi
for _ in $(seq 1 120); do
    if [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1; then
        echo "Docker engine is up"
        exit 0
    fi
    sleep 0.5
done
echo "dockerd did not answer within 60 s; see /var/log/dockerd.log:" >&2
tail -20 /var/log/dockerd.log >&2 || true
exit 1
