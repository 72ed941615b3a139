#!/usr/bin/env bash
# Installs the servers the tests start on this host, from Debian's packages: PostgreSQL 15,
# MariaDB 10.11 and Redis 7 (the engines' unit tests), RabbitMQ and Keystone served by uWSGI
# (the production profile), HAProxy (its rendered configs are checked with `haproxy -c`), and
# Chromium with its WebDriver (the dashboard's browser tests).
# Their own services are not started: the tests run private servers.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
id postgres >/dev/null 2>&1 || need+=(postgresql-15)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
[ -x /usr/bin/mariabackup ] || need+=(mariadb-backup)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/bin/keystone-manage ] || need+=(keystone)
[ -x /usr/bin/uwsgi_python3 ] || need+=(uwsgi-plugin-python3)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
    echo "The tests need: ${need[*]}" >&2
    echo "Install them with: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 1
fi
echo "installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
