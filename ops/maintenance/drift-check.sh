#!/usr/bin/env bash
# CloudFormation drift detection on every deployed stack of one environment (RUNBOOK.md
# "Maintenance"): manual console or CLI changes that the CDK code does not know about.
#
#   STACK_PREFIX=Recordings-prod AWS_REGION=eu-west-1 ops/maintenance/drift-check.sh
#
# Exit 0: no drift; 1: at least one stack drifted (the drifted resources are printed);
# 2: detection failed.
set -euo pipefail

STACK_PREFIX=${STACK_PREFIX:?set STACK_PREFIX, e.g. Recordings-prod}
POLL_SECONDS=${DRIFT_POLL_SECONDS:-10}
# Detection of a large stack takes minutes; one that never finishes is a failed check, not a pass.
DETECTION_TIMEOUT=${DRIFT_DETECTION_TIMEOUT:-900}

stacks=$(aws cloudformation describe-stacks \
  --query "Stacks[?starts_with(StackName, '${STACK_PREFIX}-')].StackName" --output text)
if [[ -z $stacks || $stacks == None ]]; then
  echo "no stacks named ${STACK_PREFIX}-*" >&2
  exit 2
fi

drifted=0 failed=0
for stack in $stacks; do
  status="" drift="" waited=0
  if ! detection=$(aws cloudformation detect-stack-drift --stack-name "$stack" --query StackDriftDetectionId --output text); then
    echo "$stack: detection could not start"
    failed=1
    continue
  fi
  while :; do
    if ! answer=$(aws cloudformation describe-stack-drift-detection-status \
      --stack-drift-detection-id "$detection" --query '[DetectionStatus, StackDriftStatus]' --output text); then
      status="" drift=""
      break
    fi
    read -r status drift <<<"$answer"
    [[ $status == DETECTION_IN_PROGRESS ]] || break
    if ((waited >= DETECTION_TIMEOUT)); then
      status="still in progress after ${DETECTION_TIMEOUT}s"
      break
    fi
    sleep "$POLL_SECONDS"
    ((waited += POLL_SECONDS)) || true
  done
  echo "$stack: ${status:-no answer} ${drift:-}"
  if [[ $status != DETECTION_COMPLETE ]]; then
    failed=1
  elif [[ $drift == DRIFTED ]]; then
    drifted=1
    aws cloudformation describe-stack-resource-drifts --stack-name "$stack" \
      --stack-resource-drift-status-filters MODIFIED DELETED \
      --query 'StackResourceDrifts[].[LogicalResourceId, ResourceType, StackResourceDriftStatus]' --output table
  fi
done

if ((failed)); then exit 2; fi
exit "$drifted"
