#!/usr/bin/env bash
# Zero-surprise container switch on one EC2 app host. The CI/CD pipeline runs it through SSM Run
# Command (no SSH); operators run it the same way (RUNBOOK.md "Deployment").
#
#   deploy.sh deploy <image>   pull, start a candidate, wait for /health/ready, switch, verify;
#                              on a failed verification, start the previous image again
#   deploy.sh rollback         switch back to the image that ran before the last deploy
#   deploy.sh status           print the current and previous image
#   deploy.sh worst-case       print how many seconds a deploy (with its rollback) can take at most
#
# Images are recorded by digest (repo@sha256:...), never by tag: a tag such as `latest` moves on
# after the deploy, so rolling back "to latest" would re-run the image that just failed.
#
# Exit codes: 0 deployed; 1 failed before the switch (the old container is untouched) or after it
# with a successful rollback; 2 failed and the rollback failed too (page someone); 64 usage.
set -euo pipefail

NAME=${RECORDINGS_CONTAINER:-recordings}
CANDIDATE="${NAME}-candidate"
STATE_DIR=${RECORDINGS_STATE_DIR:-/var/lib/recordings}
ENV_FILE=${RECORDINGS_ENV_FILE:-/etc/recordings/app.env}
PORT=${RECORDINGS_PORT:-8000}
HEALTH_PATH=${RECORDINGS_HEALTH_PATH:-/health/ready}
HEALTH_ATTEMPTS=${RECORDINGS_HEALTH_ATTEMPTS:-45}
HEALTH_INTERVAL=${RECORDINGS_HEALTH_INTERVAL:-2}
PROBE_TIMEOUT=3
STOP_TIMEOUT=${RECORDINGS_STOP_TIMEOUT:-30}
PULL_TIMEOUT=${RECORDINGS_PULL_TIMEOUT:-180}
# The boot-time unit from the launch template's user data; the first deploy takes over from it.
SYSTEMD_UNIT=${RECORDINGS_SYSTEMD_UNIT-recordings.service}
# Extra `docker run` arguments, e.g. the awslogs log driver options (word-split on purpose):
# from the environment, else from the file the instance's user data writes.
RUN_ARGS_FILE=${RECORDINGS_RUN_ARGS_FILE:-/etc/recordings/docker-run-args}
RUN_ARGS=${RECORDINGS_DOCKER_RUN_ARGS:-}
if [[ -z $RUN_ARGS && -r $RUN_ARGS_FILE ]]; then
  RUN_ARGS=$(<"$RUN_ARGS_FILE")
fi

log() { printf '%s deploy: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "$1"; exit "${2:-1}"; }

usage() {
  sed -n '2,16p' "$0" >&2
  exit 64
}

# The running image by digest. A container started from a tag (the boot unit's first start)
# reports the tag in .Config.Image; its image's RepoDigests hold what the tag meant at pull time.
current_image() {
  local reference image_id digest
  reference=$(docker inspect --format '{{.Config.Image}}' "$NAME" 2>/dev/null) || return 0
  if [[ -z $reference || $reference == *@sha256:* ]]; then
    printf '%s\n' "$reference"
    return 0
  fi
  image_id=$(docker inspect --format '{{.Image}}' "$NAME")
  for digest in $(docker image inspect --format '{{join .RepoDigests " "}}' "$image_id" 2>/dev/null); do
    if [[ ${digest%@*} == "${reference%:*}" ]]; then
      printf '%s\n' "$digest"
      return 0
    fi
  done
  # Never pushed under that name: the local image ID still names exactly this image.
  printf '%s\n' "$image_id"
}

# Upper bound of one `deploy` run: pull, candidate wait, switch, health wait, rollback, health wait
# (each wait is HEALTH_ATTEMPTS probes of at most PROBE_TIMEOUT plus HEALTH_INTERVAL), plus a
# minute for the login and the container starts. rollout.sh sizes the SSM timeout from it.
worst_case() {
  echo $((PULL_TIMEOUT + 3 * HEALTH_ATTEMPTS * (PROBE_TIMEOUT + HEALTH_INTERVAL) + 2 * STOP_TIMEOUT + 60))
}

ecr_login() {
  local image=$1 registry region
  registry=${image%%/*}
  if [[ $registry =~ ^[0-9]+\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$ ]]; then
    region=${BASH_REMATCH[1]}
    timeout 60 aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >/dev/null
  fi
}

pull() {
  local image=$1 allow_local=$2
  ecr_login "$image" || log "ECR login failed"
  if timeout "$PULL_TIMEOUT" docker pull --quiet "$image" >/dev/null; then
    return 0
  fi
  # A rollback may run while the registry is unreachable: the previous image is usually still here.
  if [[ $allow_local == yes ]] && docker image inspect "$image" >/dev/null 2>&1; then
    log "pull failed; using the local copy of $image"
    return 0
  fi
  return 1
}

# The candidate runs without a published port (the live container holds it); probe from inside.
candidate_healthy() {
  local attempt
  for ((attempt = 1; attempt <= HEALTH_ATTEMPTS; attempt++)); do
    if timeout "$PROBE_TIMEOUT" docker exec "$CANDIDATE" python -c \
      "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}${HEALTH_PATH}', timeout=${PROBE_TIMEOUT})" \
      >/dev/null 2>&1; then
      return 0
    fi
    sleep "$HEALTH_INTERVAL"
  done
  return 1
}

# Through the published port, as the load balancer sees the host.
live_healthy() {
  local attempt
  for ((attempt = 1; attempt <= HEALTH_ATTEMPTS; attempt++)); do
    if curl --fail --silent --show-error --max-time "$PROBE_TIMEOUT" "http://127.0.0.1:${PORT}${HEALTH_PATH}" >/dev/null 2>&1; then
      return 0
    fi
    sleep "$HEALTH_INTERVAL"
  done
  return 1
}

stop_live() {
  if [[ -n $SYSTEMD_UNIT ]] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-enabled --quiet "$SYSTEMD_UNIT" 2>/dev/null; then
    # The unit would restart its own container after ours is stopped; from now on Docker's
    # restart policy keeps the deployed container running across reboots.
    systemctl disable --now "$SYSTEMD_UNIT"
  fi
  docker stop --time "$STOP_TIMEOUT" "$NAME" >/dev/null 2>&1 || true
  docker rm --force "$NAME" >/dev/null 2>&1 || true
}

start_live() {
  local image=$1
  # shellcheck disable=SC2086  # RUN_ARGS holds several arguments
  docker run --detach --name "$NAME" --restart unless-stopped --env-file "$ENV_FILE" \
    --publish "${PORT}:${PORT}" --stop-timeout "$STOP_TIMEOUT" $RUN_ARGS "$image" >/dev/null
}

record() {
  local current=$1 previous=$2
  printf '%s\n' "$current" >"$STATE_DIR/current-image.tmp" && mv "$STATE_DIR/current-image.tmp" "$STATE_DIR/current-image"
  if [[ -n $previous && $previous != "$current" ]]; then
    printf '%s\n' "$previous" >"$STATE_DIR/previous-image.tmp" && mv "$STATE_DIR/previous-image.tmp" "$STATE_DIR/previous-image"
  fi
}

deploy() {
  local image=$1 allow_local=${2:-no} previous
  previous=$(current_image)
  log "deploying $image (running: ${previous:-nothing})"
  # Idempotent: a retried or repeated rollout leaves a healthy host alone.
  if [[ $previous == "$image" ]] && live_healthy; then
    record "$image" ""
    log "already running $image and healthy; nothing to do"
    return 0
  fi

  pull "$image" "$allow_local" || die "pull of $image failed; $NAME left untouched"

  docker rm --force "$CANDIDATE" >/dev/null 2>&1 || true
  docker run --detach --name "$CANDIDATE" --env-file "$ENV_FILE" "$image" >/dev/null \
    || die "candidate of $image did not start; $NAME left untouched"
  if ! candidate_healthy; then
    docker logs --tail 50 "$CANDIDATE" >&2 || true
    docker rm --force "$CANDIDATE" >/dev/null 2>&1 || true
    die "candidate of $image never became ready on ${HEALTH_PATH}; $NAME left untouched"
  fi
  docker rm --force "$CANDIDATE" >/dev/null

  log "switching $NAME to $image"
  stop_live
  if start_live "$image" && live_healthy; then
    record "$image" "$previous"
    log "deployed $image (previous: ${previous:-none})"
    return 0
  fi

  docker logs --tail 100 "$NAME" >&2 || true
  if [[ -z $previous ]]; then
    die "$image failed its health check and there is no previous image to roll back to" 2
  fi
  log "$image failed its health check; rolling back to $previous"
  stop_live
  if start_live "$previous" && live_healthy; then
    record "$previous" ""
    die "deploy of $image failed; rolled back to $previous" 1
  fi
  die "deploy of $image failed and the rollback to $previous failed too" 2
}

rollback() {
  [[ -s $STATE_DIR/previous-image ]] || die "no previous image recorded in $STATE_DIR" 1
  local target
  target=$(<"$STATE_DIR/previous-image")
  log "rolling back to $target"
  deploy "$target" yes
}

status() {
  printf 'current:  %s\n' "$(cat "$STATE_DIR/current-image" 2>/dev/null || echo unknown)"
  printf 'previous: %s\n' "$(cat "$STATE_DIR/previous-image" 2>/dev/null || echo none)"
  printf 'running:  %s\n' "$(current_image)"
}

main() {
  [[ $# -ge 1 ]] || usage
  if [[ $1 == worst-case ]]; then
    worst_case
    return 0
  fi
  mkdir -p "$STATE_DIR"
  # One deploy at a time per host (SSM may retry a command while the first run still works).
  exec 9>"$STATE_DIR/deploy.lock"
  flock --nonblock 9 || die "another deploy is running on this host" 1
  case $1 in
    deploy) [[ $# -eq 2 ]] || usage; deploy "$2" ;;
    rollback) [[ $# -eq 1 ]] || usage; rollback ;;
    status) status ;;
    *) usage ;;
  esac
}

main "$@"
