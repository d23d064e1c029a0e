#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium (report and UI screenshots) and docker-compose
# (validates docker-compose.yaml; no Docker engine is needed for `docker-compose config`).
# Installs what is missing when run as root with apt-get; otherwise says what to install and carries on.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; the tests that need them will say so"
else
  echo "note: install ${need[*]} (Debian packages) for the browser and compose tests"
fi
