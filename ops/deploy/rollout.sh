#!/usr/bin/env bash
# Roll an image over the EC2 app hosts through SSM Run Command (no SSH), then health-check the
# service through the load balancer. Run by .github/workflows/ci-cd.yml and by operators:
#
#   rollout.sh deploy <image>     deploy.sh on every InService host of the stack's ASG, one host
#                                 at a time; then GET <ServiceUrl>/health/ready must answer 200
#   rollout.sh hosts              list the InService instances
#
# Environment: STACK_PREFIX (e.g. Recordings-prod), AWS_REGION. Exit 0 only when every host
# switched and the service is healthy; a failed host stops the rollout (max errors 0).
set -euo pipefail

STACK_PREFIX=${STACK_PREFIX:?set STACK_PREFIX, e.g. Recordings-prod}
HERE=$(cd "$(dirname "$0")" && pwd)
SSM_TIMEOUT=${ROLLOUT_SSM_TIMEOUT:-900}
POLL_SECONDS=${ROLLOUT_POLL_SECONDS:-10}
HEALTH_ATTEMPTS=${ROLLOUT_HEALTH_ATTEMPTS:-20}
HEALTH_INTERVAL=${ROLLOUT_HEALTH_INTERVAL:-6}

log() { printf 'rollout: %s\n' "$*" >&2; }

output() {
  aws cloudformation describe-stacks --stack-name "${STACK_PREFIX}-ec2" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

hosts() {
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$(output AutoScalingGroupName)" \
    --query "AutoScalingGroups[0].Instances[?LifecycleState=='InService'].InstanceId" --output text
}

# The SSM parameters: install this revision of deploy.sh on the host, then run it.
ssm_parameters() {
  local image=$1 script
  script=$(base64 -w0 "$HERE/deploy.sh")
  python3 - "$image" "$script" <<'PY'
import json, shlex, sys
image, script = sys.argv[1], sys.argv[2]
print(json.dumps({"commands": [
    "set -euo pipefail",
    "install -d -m 0755 /opt/recordings",
    f"echo {script} | base64 -d > /opt/recordings/deploy.sh",
    "chmod 0755 /opt/recordings/deploy.sh",
    f"/opt/recordings/deploy.sh deploy {shlex.quote(image)}",
]}))
PY
}

run_on_host() {
  local instance=$1 image=$2 command_id status waited=0
  command_id=$(aws ssm send-command --instance-ids "$instance" --document-name AWS-RunShellScript \
    --comment "deploy ${image##*/}" --timeout-seconds "$SSM_TIMEOUT" \
    --parameters "$(ssm_parameters "$image")" --query Command.CommandId --output text)
  log "$instance: command $command_id"
  while :; do
    status=$(aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
      --query Status --output text 2>/dev/null || echo Pending)
    case $status in
      Pending | InProgress | Delayed) ;;
      *) break ;;
    esac
    ((waited += POLL_SECONDS)) || true
    if ((waited > SSM_TIMEOUT)); then
      status=TimedOut
      break
    fi
    sleep "$POLL_SECONDS"
  done
  aws ssm get-command-invocation --command-id "$command_id" --instance-id "$instance" \
    --query '[StandardOutputContent, StandardErrorContent]' --output text >&2 || true
  log "$instance: $status"
  [[ $status == Success ]]
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
  instances=$(hosts)
  [[ -n $instances && $instances != None ]] || { log "no InService instance in ${STACK_PREFIX}-ec2"; return 1; }
  for instance in $instances; do
    run_on_host "$instance" "$image" || { log "stopping: $instance failed (it rolled itself back)"; return 1; }
  done
  service_healthy
}

case ${1:-} in
  deploy) [[ $# -eq 2 ]] || { sed -n '2,10p' "$0" >&2; exit 64; }; deploy "$2" ;;
  hosts) hosts ;;
  *) sed -n '2,10p' "$0" >&2; exit 64 ;;
esac
