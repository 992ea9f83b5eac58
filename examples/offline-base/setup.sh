#!/bin/sh
# One command, no internet: a local registry on 127.0.0.1 serving
# library/busybox:latest, an image bkt builds from this machine's
# busybox-static (target "busybox" of bkt.config.ts).
#
#   ./setup.sh [bkt build flags…]   start the registry (unless one answers on the port), build and push
#   ./setup.sh stop                 stop the registry this script started
#
# PORT (default 5000) is the registry's port; REGISTRY_DIR (default
# ./.registry) holds its storage, config, log and pid file; BKT is the bkt
# command (default: npx --no-install bkt).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
port=${PORT:-5000}
state=${REGISTRY_DIR:-$here/.registry}
bkt=${BKT:-npx --no-install bkt}
url="http://127.0.0.1:$port/v2/"

if [ "${1:-}" = stop ]; then
  if [ -f "$state/registry.pid" ]; then
    kill "$(cat "$state/registry.pid")" 2>/dev/null || true
    rm -f "$state/registry.pid"
    echo "registry on 127.0.0.1:$port stopped"
  fi
  exit 0
fi

if curl -fsS -o /dev/null "$url" 2>/dev/null; then
  echo "a registry already answers on 127.0.0.1:$port: using it"
else
  command -v docker-registry >/dev/null || { echo "docker-registry is missing: apt-get install docker-registry" >&2; exit 1; }
  mkdir -p "$state/storage"
  cat > "$state/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $state/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$state/config.yml" >"$state/registry.log" 2>&1 &
  echo $! > "$state/registry.pid"
  tries=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
      echo "docker-registry did not answer on $url; its log:" >&2
      cat "$state/registry.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "registry on 127.0.0.1:$port (storage $state/storage; stop it with ./setup.sh stop)"
fi

# The image: bkt builds the "busybox" target and pushes it (plain HTTP: the registry is on 127.0.0.1).
# shellcheck disable=SC2086
PORT=$port $bkt build -C "$here" busybox -t "127.0.0.1:$port/library/busybox:latest" --push "$@"
echo "127.0.0.1:$port/library/busybox:latest is ready: FROM it in a Dockerfile, or image('127.0.0.1:$port/library/busybox:latest') in bkt.config.ts"
