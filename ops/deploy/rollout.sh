#!/usr/bin/env bash
# Roll an image over the EC2 app hosts through SSM Run Command (no SSH), one host at a time, then
# health-check the service through the load balancer. Run by .github/workflows/ci-cd.yml and by
# operators:
#
#   rollout.sh deploy <repo@sha256:digest>   for each InService host of the stack's ASG: drain it
#                                 from the target groups, run deploy.sh on it, register it again
#                                 and wait until the load balancer calls it healthy; then
#                                 GET <ServiceUrl>/health/ready must answer 200
#   rollout.sh hosts              list the InService instances
#   rollout.sh worst-case <hosts> upper bound in seconds of a rollout over that many hosts
#
# Environment: STACK_PREFIX (e.g. Recordings-prod), AWS_REGION. Exit 0 only when every host
# switched and the service is healthy; the first failed host stops the rollout (it rolled itself
# back and is registered again). Images are given by digest so that a rollback means one image.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
POLL_SECONDS=${ROLLOUT_POLL_SECONDS:-10}
# SSM must start the command within this (the agent is normally immediate).
SSM_DELIVERY_TIMEOUT=${ROLLOUT_SSM_DELIVERY_TIMEOUT:-120}
# get-command-invocation answers InvocationDoesNotExist for a moment after send-command.
SSM_REGISTER_WAIT=${ROLLOUT_SSM_REGISTER_WAIT:-60}
# Draining ends after the target group's deregistration delay (30 s) at the latest.
DRAIN_TIMEOUT=${ROLLOUT_DRAIN_TIMEOUT:-90}
# Registration: the health check's interval x healthy threshold, plus slack.
HEALTHY_TIMEOUT=${ROLLOUT_HEALTHY_TIMEOUT:-180}
HEALTH_ATTEMPTS=${ROLLOUT_HEALTH_ATTEMPTS:-20}
HEALTH_INTERVAL=${ROLLOUT_HEALTH_INTERVAL:-6}
CONTAINER_PORT=${ROLLOUT_CONTAINER_PORT:-8000}
SSM_COMMENT_MAX=100

log() { printf 'rollout: %s\n' "$*" >&2; }

usage() {
  sed -n '2,16p' "$0" >&2
  exit 64
}

# deploy.sh's own upper bound plus a minute: SSM never cuts a deploy (or its rollback) short.
execution_timeout() {
  echo $(($(bash "$HERE/deploy.sh" worst-case) + 60))
}

per_host_worst_case() {
  echo $((DRAIN_TIMEOUT + SSM_DELIVERY_TIMEOUT + $(execution_timeout) + HEALTHY_TIMEOUT + 3 * POLL_SECONDS))
}

worst_case() {
  local hosts=$1
  echo $((hosts * $(per_host_worst_case) + HEALTH_ATTEMPTS * (HEALTH_INTERVAL + 5)))
}

output() {
  aws cloudformation describe-stacks --stack-name "${STACK_PREFIX}-ec2" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

hosts() {
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$ASG" \
    --query "AutoScalingGroups[0].Instances[?LifecycleState=='InService'].InstanceId" --output text
}

target_groups() {
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$ASG" \
    --query "AutoScalingGroups[0].TargetGroupARNs" --output text
}

target_state() {
  aws elbv2 describe-target-health --target-group-arn "$1" --targets "Id=$2,Port=$CONTAINER_PORT" \
    --query 'TargetHealthDescriptions[0].TargetHealth.State' --output text
}

# Wait until the target is in state $3 ("unused": fully deregistered, "healthy": serving).
wait_target() {
  local group=$1 instance=$2 wanted=$3 timeout=$4 state waited=0
  while :; do
    state=$(target_state "$group" "$instance") || state=error
    [[ $state == "$wanted" ]] && return 0
    if [[ $wanted == healthy && $state == unhealthy ]]; then
      log "$instance: the load balancer reports it unhealthy"
      return 1
    fi
    if ((waited >= timeout)); then
      log "$instance: still $state after ${timeout}s (waiting for $wanted)"
      return 1
    fi
    sleep "$POLL_SECONDS"
    ((waited += POLL_SECONDS)) || true
  done
}

drain() {
  local instance=$1 group
  for group in $GROUPS_ARNS; do
    aws elbv2 deregister-targets --target-group-arn "$group" --targets "Id=$instance,Port=$CONTAINER_PORT" || return 1
  done
  for group in $GROUPS_ARNS; do
    wait_target "$group" "$instance" unused "$DRAIN_TIMEOUT" || return 1
  done
  log "$instance: drained"
}

register() {
  local instance=$1 group
  for group in $GROUPS_ARNS; do
    aws elbv2 register-targets --target-group-arn "$group" --targets "Id=$instance,Port=$CONTAINER_PORT" || return 1
  done
  for group in $GROUPS_ARNS; do
    wait_target "$group" "$instance" healthy "$HEALTHY_TIMEOUT" || return 1
  done
  log "$instance: healthy in the load balancer"
}

# The SSM parameters: install this revision of deploy.sh on the host, then run it.
ssm_parameters() {
  local image=$1 script
  script=$(base64 -w0 "$HERE/deploy.sh")
  python3 - "$image" "$script" "$(execution_timeout)" <<'PY'
import json, shlex, sys
image, script, timeout = sys.argv[1:4]
print(json.dumps({"commands": [
    "set -euo pipefail",
    "install -d -m 0755 /opt/recordings",
    f"echo {script} | base64 -d > /opt/recordings/deploy.sh",
    "chmod 0755 /opt/recordings/deploy.sh",
    f"/opt/recordings/deploy.sh deploy {shlex.quote(image)}",
], "executionTimeout": [timeout]}))
PY
}

ssm_deploy() {
  local instance=$1 image=$2 comment command_id status waited=0 deadline
  # SSM rejects comments over 100 characters: name the digest, not the whole reference.
  comment="recordings deploy ${image##*@}"
  comment=${comment:0:SSM_COMMENT_MAX}
  if ! command_id=$(aws ssm send-command --instance-ids "$instance" --document-name AWS-RunShellScript \
    --comment "$comment" --timeout-seconds "$SSM_DELIVERY_TIMEOUT" \
    --parameters "$(ssm_parameters "$image")" --query Command.CommandId --output text); then
    log "$instance: send-command failed"
    return 1
  fi
  if [[ ! $command_id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; then
    log "$instance: send-command returned no command id (${command_id:-empty})"
    return 1
  fi
  log "$instance: command $command_id"
  deadline=$((SSM_DELIVERY_TIMEOUT + $(execution_timeout) + 2 * POLL_SECONDS))
  while :; do
    if ! status=$(aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
      --query Status --output text 2>/dev/null); then
      if ((waited >= SSM_REGISTER_WAIT)); then
        log "$instance: SSM knows no invocation of $command_id"
        return 1
      fi
      status=Pending
    fi
    case $status in
      Pending | InProgress | Delayed | Cancelling) ;;
      *) break ;;
    esac
    if ((waited >= deadline)); then
      status="no result after ${deadline}s"
      break
    fi
    sleep "$POLL_SECONDS"
    ((waited += POLL_SECONDS)) || true
  done
  aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
    --query '[StandardOutputContent, StandardErrorContent]' --output text >&2 || true
  log "$instance: $status"
  [[ $status == Success ]]
}

# Out of the load balancer, deploy, back in. A host whose deploy failed is registered again
# anyway: deploy.sh left it on (or rolled it back to) the previous image.
roll_host() {
  local instance=$1 image=$2 deployed=0
  drain "$instance" || { register "$instance" || true; return 1; }
  ssm_deploy "$instance" "$image" && deployed=1
  register "$instance" || return 1
  ((deployed))
}

service_healthy() {
  local url attempt
  url="$(output ServiceUrl)/health/ready"
  for ((attempt = 1; attempt <= HEALTH_ATTEMPTS; attempt++)); do
    if curl --fail --silent --show-error --max-time 5 "$url" >/dev/null; then
      log "healthy: $url"
      return 0
    fi
    sleep "$HEALTH_INTERVAL"
  done
  log "unhealthy: $url"
  return 1
}

deploy() {
  local image=$1 instances instance
  if [[ ! $image =~ @sha256:[0-9a-f]{64}$ ]]; then
    log "give the image by digest (repo@sha256:...), not $image: a tag can move during the rollout"
    return 64
  fi
  ASG=$(output AutoScalingGroupName)
  GROUPS_ARNS=$(target_groups)
  [[ -n $GROUPS_ARNS && $GROUPS_ARNS != None ]] || { log "$ASG has no target group"; return 1; }
  instances=$(hosts)
  [[ -n $instances && $instances != None ]] || { log "no InService instance in $ASG"; return 1; }
  for instance in $instances; do
    roll_host "$instance" "$image" || { log "stopping: $instance failed"; return 1; }
  done
  service_healthy
}

case ${1:-} in
  deploy)
    [[ $# -eq 2 ]] || usage
    STACK_PREFIX=${STACK_PREFIX:?set STACK_PREFIX, e.g. Recordings-prod}
    deploy "$2"
    ;;
  hosts)
    STACK_PREFIX=${STACK_PREFIX:?set STACK_PREFIX, e.g. Recordings-prod}
    ASG=$(output AutoScalingGroupName)
    hosts
    ;;
  worst-case)
    [[ $# -eq 2 && $2 =~ ^[0-9]+$ ]] || usage
    worst_case "$2"
    ;;
  *) usage ;;
esac
