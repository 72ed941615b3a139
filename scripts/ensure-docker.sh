#!/usr/bin/env bash
# Makes sure a Docker engine answers (DOCKER_HOST is honoured). As root on a machine without
# one, installs Debian's docker.io and starts dockerd; otherwise says what is missing and how
# to fix it, and exits 1.
set -euo pipefail

SOCKET=/var/run/docker.sock
LOG=/var/log/dockerd.log
WAIT_SECONDS=60

say() { echo "ensure-docker: $*"; }
fail() {
    echo "ensure-docker: $*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
engine_answers() { have docker && docker info >/dev/null 2>&1; }

dockerd_running() {
    local comm name
    for comm in /proc/[0-9]*/comm; do
        read -r name 2>/dev/null <"$comm" || continue
        [ "$name" = dockerd ] && return 0
    done
    return 1
}

explain_to_user() {
    echo "ensure-docker: no Docker engine answers, and only root can set one up here." >&2
    if dockerd_running && [ -S "$SOCKET" ] && have docker; then
        echo "dockerd runs, but $(id -un) may not use $SOCKET. Run:" >&2
        echo "  sudo usermod -aG docker $(id -un)   # then log in again" >&2
        exit 1
    fi
    have docker || echo "missing: the docker client (command 'docker')" >&2
    have dockerd || echo "missing: the Docker engine (command 'dockerd')" >&2
    dockerd_running || echo "missing: a running dockerd" >&2
    echo "Run, as root:" >&2
    if ! have dockerd || ! have docker; then
        echo "  apt-get update && apt-get install -y docker.io" >&2
    fi
    echo "  setsid dockerd --userland-proxy=false >$LOG 2>&1 &" >&2
    echo "or run this script as root: sudo bash scripts/ensure-docker.sh" >&2
    exit 1
}

if engine_answers; then
    exit 0
fi
if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix://$SOCKET" ]; then
    fail "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST; start that engine or unset DOCKER_HOST"
fi
if [ "$(id -u)" -ne 0 ]; then
    explain_to_user
fi

if ! have dockerd || ! have docker; then
    have apt-get || fail "dockerd is missing and there is no apt-get: install Docker Engine by hand"
    say "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y docker.io
fi
started=""
if dockerd_running; then
    say "dockerd already runs; waiting for it to answer"
else
    # Published ports are forwarded by the kernel, not copied through one docker-proxy
    # process per port: a backup or a client's traffic then costs no extra CPU on the host.
    # A daemon.json that already chooses the proxy keeps its choice (dockerd refuses both).
    options=()
    grep -qs '"userland-proxy"' /etc/docker/daemon.json || options+=(--userland-proxy=false)
    say "starting dockerd ${options[*]} (log: $LOG)"
    setsid dockerd "${options[@]}" >"$LOG" 2>&1 </dev/null &
    started=$!
fi

deadline=$((SECONDS + WAIT_SECONDS))
problem="did not answer within $WAIT_SECONDS s"
while [ "$SECONDS" -lt "$deadline" ]; do
    if [ -S "$SOCKET" ] && docker info >/dev/null 2>&1; then
        say "Docker engine $(docker version --format '{{.Server.Version}}') answers on $SOCKET"
        exit 0
    fi
    if [ -n "$started" ] && ! kill -0 "$started" 2>/dev/null && ! dockerd_running; then
        problem="exited"
        break
    fi
    sleep 0.5
done
echo "ensure-docker: dockerd $problem; the end of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
