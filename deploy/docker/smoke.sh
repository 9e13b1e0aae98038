#!/usr/bin/env bash
# Docker smoke test: build the image, run it, send the seed example from the host and check the
# gradients against a closed form computed on the host. The container is always removed.
#
#   deploy/docker/smoke.sh                 # from anywhere; exits non-zero with a message on failure
#
# Environment:
#   GRADSERVE_IMAGE   image tag to build and run (default gradserve:smoke)
#   PYTHON            host Python with numpy, for the checks (default python3)
#   SMOKE_TIMEOUT     seconds to wait for readiness and for the HEALTHCHECK (default 90)
#   GRADSERVE_SMOKE_CONTAINER  container name (default: a unique one)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
image=${GRADSERVE_IMAGE:-gradserve:smoke}
python=${PYTHON:-python3}
timeout=${SMOKE_TIMEOUT:-90}
key="smoke-$RANDOM$RANDOM"
name=${GRADSERVE_SMOKE_CONTAINER:-gradserve-smoke-$$-$RANDOM}
t0=$SECONDS

log() { echo "smoke: $*"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

# These machines reach no container registry: the shared tool starts Docker if needed and builds a
# local python:3.11-slim. Elsewhere the build pulls the real base image.
base_tool="$root/../shared/tools/docker-base-image"
if [ -e "$base_tool" ]; then
  log "running $base_tool"
  "$base_tool" || fail "$base_tool failed (it needs root; see its output above)"
fi
command -v docker >/dev/null || fail "docker CLI not found"
docker info >/dev/null 2>&1 || fail "no Docker daemon answers 'docker info'"

log "building $image"
t_build=$SECONDS
buildlog=$(mktemp)
# The builder stage is tagged too, so that pruning below keeps its layers: they are the cache.
if ! { docker build --target builder --tag "$image-builder" "$root" \
       && docker build --tag "$image" "$root"; } >"$buildlog" 2>&1; then
  tail -n 60 "$buildlog" >&2; rm -f "$buildlog"
  fail "docker build failed (last lines above)"
fi
rm -f "$buildlog"
log "built $image in $((SECONDS - t_build)) s"
# Each rebuild leaves the previous images dangling (a venv of ~260 MB each); drop ours. The current
# builder is tagged, so the layer cache survives.
for title in gradserve gradserve-builder; do
  docker image prune --force --filter "label=org.opencontainers.image.title=$title" >/dev/null || true
done

# Static checks of the image: non-root user, no torch, no build tooling.
user=$(docker image inspect --format '{{.Config.User}}' "$image")
case "${user%%:*}" in ""|0|root) fail "image runs as root (User='$user')";; esac
docker run --rm --entrypoint python "$image" -c '
import importlib.util as u, shutil, sys
bad = [m for m in ("torch", "pip", "setuptools") if u.find_spec(m)] + [t for t in ("gcc", "cc") if shutil.which(t)]
sys.exit("present in the image: " + ", ".join(bad) if bad else 0)' || fail "image content check failed"
log "image runs as uid ${user%%:*}; no torch, pip, setuptools or compiler inside"

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && docker container inspect "$name" >/dev/null 2>&1; then
    echo "smoke: --- container logs ---" >&2
    docker logs --tail 100 "$name" >&2 || true
  fi
  docker rm --force "$name" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Docker picks a free loopback port (no race); the HEALTHCHECK is sped up for the test only. The
# read-only root filesystem is what the Kubernetes manifests use too.
docker run --detach --name "$name" \
  --publish 127.0.0.1::8000 \
  --read-only --tmpfs /tmp \
  --env GRADSERVE_API_KEYS="$key" \
  --health-interval 2s --health-start-period 5s \
  "$image" >/dev/null || fail "docker run failed"
port=$(docker port "$name" 8000/tcp 2>/dev/null | head -n 1 | sed 's/.*://') || true
[ -n "$port" ] || fail "no published port for $name (container is \
$(docker inspect --format '{{.State.Status}}, exit code {{.State.ExitCode}}' "$name"))"
url="http://127.0.0.1:$port"
log "container $name listening on $url"

"$python" "$root/deploy/docker/seed_check.py" wait "$url" --timeout "$timeout" --container "$name" \
  || fail "server did not become ready"
"$python" "$root/deploy/docker/seed_check.py" seed "$url" --api-key "$key" \
  || fail "seed example check failed"
"$python" "$root/deploy/docker/seed_check.py" unauthorized "$url" \
  || fail "a request without the API key was not refused with 401"

# The image's own HEALTHCHECK must turn the container healthy.
health=starting
for _ in $(seq "$timeout"); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$name")
  [ "$health" = healthy ] && break
  [ "$health" = unhealthy ] && break
  sleep 1
done
[ "$health" = healthy ] || fail "container HEALTHCHECK status is '$health', not healthy"
log "HEALTHCHECK reports healthy"

log "PASS in $((SECONDS - t0)) s"
