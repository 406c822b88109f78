#!/usr/bin/env bash
# The registry and parameter side of a release, for .github/workflows/ci-cd.yml (RUNBOOK.md
# "Deployment"). Images are named by digest throughout: tags move, digests do not.
#
#   release.sh repository                  the ECR repository URI (output of <STACK_PREFIX>-data)
#   release.sh deployed                    repo@digest CI last rolled out (empty on a first run)
#   release.sh push <local image> <tag>    push under <tag>; print repo@digest
#   release.sh record <repo@digest>        make it the image every new host boots
#   release.sh mark-latest <repo@digest>   tag it `latest` (nothing to do when it already is)
#
# Environment: STACK_PREFIX (e.g. Recordings-prod), DIGEST_PARAMETER (e.g.
# /recordings/prod/image-digest; the hosts' user data reads it at boot), REPOSITORY for all but
# `repository`.
set -euo pipefail

log() { printf 'release: %s\n' "$*" >&2; }

usage() {
  sed -n '2,14p' "$0" >&2
  exit 64
}

repository() {
  local uri
  uri=$(aws cloudformation describe-stacks --stack-name "${STACK_PREFIX:?}-data" \
    --query "Stacks[0].Outputs[?OutputKey=='RepositoryUri'].OutputValue" --output text)
  [[ $uri == *.dkr.ecr.*/* ]] || { log "no RepositoryUri output on ${STACK_PREFIX}-data: $uri"; return 1; }
  printf '%s\n' "$uri"
}

deployed() {
  local answer
  if answer=$(aws ssm get-parameter --name "${DIGEST_PARAMETER:?}" --query Parameter.Value --output text 2>&1); then
    [[ $answer =~ ^sha256:[0-9a-f]{64}$ ]] || { log "$DIGEST_PARAMETER holds no digest: $answer"; return 1; }
    printf '%s@%s\n' "${REPOSITORY:?}" "$answer"
    return 0
  fi
  # A first deploy: nothing ran before, so there is nothing to roll back to.
  [[ $answer == *ParameterNotFound* ]] && return 0
  log "reading $DIGEST_PARAMETER failed: $answer"
  return 1
}

digest_of_tag() {
  aws ecr describe-images --repository-name "${REPOSITORY#*/}" --image-ids "imageTag=$1" \
    --query 'imageDetails[0].imageDigest' --output text
}

push() {
  local local_image=$1 tag=$2 digest
  docker tag "$local_image" "${REPOSITORY:?}:$tag"
  docker push --quiet "$REPOSITORY:$tag" >&2
  digest=$(digest_of_tag "$tag")
  [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { log "no digest for $REPOSITORY:$tag: $digest"; return 1; }
  printf '%s@%s\n' "$REPOSITORY" "$digest"
}

record() {
  local image=$1
  [[ $image =~ @(sha256:[0-9a-f]{64})$ ]] || { log "not a digest reference: $image"; return 64; }
  aws ssm put-parameter --name "${DIGEST_PARAMETER:?}" --type String --overwrite \
    --value "${BASH_REMATCH[1]}" --description "Server image digest CI rolled out; hosts boot it" >/dev/null
  log "$DIGEST_PARAMETER = ${BASH_REMATCH[1]}"
}

mark_latest() {
  local image=$1 digest current manifest
  digest=${image##*@}
  current=$(digest_of_tag latest 2>/dev/null || true)
  if [[ $current == "$digest" ]]; then
    log "latest is already $digest"
    return 0
  fi
  manifest=$(aws ecr batch-get-image --repository-name "${REPOSITORY#*/}" --image-ids "imageDigest=$digest" \
    --query 'images[0].imageManifest' --output text)
  aws ecr put-image --repository-name "${REPOSITORY#*/}" --image-tag latest --image-manifest "$manifest" >/dev/null
  log "latest = $digest"
}

case ${1:-} in
  repository) [[ $# -eq 1 ]] || usage; repository ;;
  deployed) [[ $# -eq 1 ]] || usage; deployed ;;
  push) [[ $# -eq 3 ]] || usage; push "$2" "$3" ;;
  record) [[ $# -eq 2 ]] || usage; record "$2" ;;
  mark-latest) [[ $# -eq 2 ]] || usage; mark_latest "$2" ;;
  *) usage ;;
esac
