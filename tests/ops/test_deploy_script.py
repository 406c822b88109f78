"""ops/deploy/deploy.sh against fake `docker`, `curl`, `systemctl` and `aws` commands that record
every call and fail on demand. The fake docker resolves tags through a registry that can move them,
keeps images by digest and remembers which image the live container runs, so the fake curl answers
like the live container would; rollout.sh runs against tests/ops/fake_aws.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.conftest import REPO, tool

SCRIPT = REPO / "ops" / "deploy" / "deploy.sh"
REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recordings"
OLD_DIGEST = "sha256:" + "a" * 64
NEW_DIGEST = "sha256:" + "b" * 64
OLD = f"{REPOSITORY}@{OLD_DIGEST}"
NEW = f"{REPOSITORY}@{NEW_DIGEST}"

FAKE_DOCKER = r"""#!/usr/bin/env bash
# Records the call; fails when told to; remembers what the live container runs. Image IDs are
# "sha256:1d" + the digest's first 62 characters; $state/registry maps tags to digests;
# $state/images lists the local images as "<id> <repo>@<digest>".
echo "docker $*" >>"$FAKE_LOG"
state=$FAKE_STATE
digest_of() {  # a reference as the registry resolves it now
  case $1 in
    *@sha256:*) echo "${1#*@}" ;;
    *) awk -v r="$1" '$1 == r {print $2}' "$state/registry" ;;
  esac
}
local_id() {  # the local image a reference or ID names, if present
  local ref=$1
  if [[ $ref == sha256:1d* ]]; then grep -q "^$ref " "$state/images" && echo "$ref"; return 0; fi
  if [[ $ref == *@sha256:* ]]; then awk -v r="$ref" '$2 == r {print $1; exit}' "$state/images"; return 0; fi
  awk -v r="$ref" '$2 == r {print $1; exit}' "$state/tags" 2>/dev/null
}
case $1 in
  inspect)
    [[ -s $state/live ]] || { echo "Error: No such object: ${*: -1}" >&2; exit 1; }
    if [[ $* == *"{{.Image}}"* ]]; then cat "$state/live-id"; else cat "$state/live"; fi ;;
  pull)
    image=${*: -1}
    [[ ",$FAKE_FAIL_PULL," == *",$image,"* ]] && { echo "pull access denied" >&2; exit 1; }
    digest=$(digest_of "$image")
    [[ -n $digest ]] || { echo "manifest unknown" >&2; exit 1; }
    id="sha256:1d${digest:7:62}"
    repo=${image%@*}; repo=${repo%:*}
    echo "$id $repo@$digest" >>"$state/images"
    [[ $image != *@* ]] && echo "$id $image" >>"$state/tags"
    exit 0 ;;
  image)
    target=${*: -1}
    id=$(local_id "$target")
    [[ -n $id ]] || { echo "Error: No such image: $target" >&2; exit 1; }
    if [[ $* == *RepoDigests* ]]; then
      awk -v i="$id" '$1 == i {printf "%s ", $2}' "$state/images"; echo
    fi
    exit 0 ;;
  login) cat >/dev/null; exit 0 ;;
  run)
    name="" image=${*: -1}
    while [[ $# -gt 0 ]]; do [[ $1 == --name ]] && name=$2; shift; done
    [[ ",$FAKE_FAIL_RUN," == *",$image,"* ]] && exit 125
    id=$(local_id "$image")
    [[ -n $id ]] || { echo "Unable to find image '$image' locally" >&2; exit 125; }
    if [[ $name == recordings ]]; then echo "$image" >"$state/live"; echo "$id" >"$state/live-id"; fi
    [[ $name == recordings-candidate ]] && echo "$image" >"$state/candidate"
    echo "c0ffee" ;;
  exec)
    [[ ",$FAKE_CANDIDATE_UNHEALTHY," == *",$(cat "$state/candidate"),"* ]] && exit 1
    exit 0 ;;
  stop|rm)
    [[ " $* " == *" recordings "* ]] && : >"$state/live"
    exit 0 ;;
  logs) echo "fake logs"; exit 0 ;;
  *) exit 0 ;;
esac
"""

FAKE_CURL = r"""#!/usr/bin/env bash
echo "curl ${*: -1}" >>"$FAKE_LOG"
live=$(cat "$FAKE_STATE/live" 2>/dev/null)
[[ -z $live ]] && exit 7
[[ ",$FAKE_HTTP_UNHEALTHY," == *",$live,"* ]] && exit 22
exit 0
"""

FAKE_SYSTEMCTL = r"""#!/usr/bin/env bash
echo "systemctl $*" >>"$FAKE_LOG"
case $1 in
  is-enabled) [[ ${FAKE_UNIT_ENABLED:-0} == 1 ]] ;;
  *) exit 0 ;;
esac
"""

FAKE_AWS = r"""#!/usr/bin/env bash
echo "aws $*" >>"$FAKE_LOG"
echo "fake-password"
"""


def _image_id(digest: str) -> str:
    return "sha256:1d" + digest.removeprefix("sha256:")[:62]


@dataclass
class Host:
    root: Path
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def calls(self) -> list[str]:
        path = self.root / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    def docker_calls(self, verb: str) -> list[str]:
        return [c for c in self.calls() if c.startswith(f"docker {verb} ")]

    def live(self) -> str:
        return (self.root / "fake" / "live").read_text().strip()

    def run(self, *args: str, **fake: str) -> subprocess.CompletedProcess:
        (self.root / "calls.log").unlink(missing_ok=True)
        return subprocess.run(
            ["bash", str(SCRIPT), *args], env={**self.env, **fake}, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def host(tmp_path) -> Host:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"docker": FAKE_DOCKER, "curl": FAKE_CURL, "systemctl": FAKE_SYSTEMCTL, "aws": FAKE_AWS}.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(0o755)
    fake = tmp_path / "fake"
    fake.mkdir()
    # The host runs the old image, pulled by digest; the registry's `latest` is that image too.
    old_id = _image_id(OLD_DIGEST)
    (fake / "live").write_text(OLD + "\n")
    (fake / "live-id").write_text(old_id + "\n")
    (fake / "images").write_text(f"{old_id} {OLD}\n")
    (fake / "registry").write_text(f"{REPOSITORY}:latest {OLD_DIGEST}\n")
    env_file = tmp_path / "app.env"
    env_file.write_text("DATABASE_URL=postgresql://example\n")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(tmp_path / "fake"),
        "RECORDINGS_STATE_DIR": str(tmp_path / "state"),
        "RECORDINGS_ENV_FILE": str(env_file),
        "RECORDINGS_HEALTH_ATTEMPTS": "3",
        "RECORDINGS_HEALTH_INTERVAL": "0",
    }
    return Host(root=tmp_path, env=env)


def test_shellcheck_is_clean():
    result = subprocess.run([tool("shellcheck"), str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_successful_deploy_switches_and_records_the_previous_image(host):
    result = host.run("deploy", NEW)
    assert result.returncode == 0, result.stderr
    calls = host.calls()
    order = [
        "docker inspect --format {{.Config.Image}} recordings",
        "aws ecr get-login-password --region eu-west-1",
        f"docker pull --quiet {NEW}",
        "docker run --detach --name recordings-candidate",
        "docker exec recordings-candidate",
        "docker rm --force recordings-candidate",
        "docker stop --time 30 recordings",
        "docker run --detach --name recordings --restart unless-stopped",
        "curl http://127.0.0.1:8000/health/ready",
    ]
    cursor = 0
    for step in order:  # each step happens, in this order
        found = next((i for i in range(cursor, len(calls)) if calls[i].startswith(step)), None)
        assert found is not None, f"missing or out of order: {step}\n" + "\n".join(calls)
        cursor = found + 1
    candidate_run = next(c for c in calls if c.startswith("docker run --detach --name recordings-candidate"))
    assert candidate_run.endswith(NEW)
    assert "--publish" not in candidate_run
    live_run = host.docker_calls("run")[-1]
    assert "--publish 8000:8000" in live_run
    assert live_run.endswith(NEW)
    assert host.live() == NEW
    assert (host.state_dir / "current-image").read_text().strip() == NEW
    assert (host.state_dir / "previous-image").read_text().strip() == OLD


def test_pull_failure_leaves_the_old_container_untouched(host):
    result = host.run("deploy", NEW, FAKE_FAIL_PULL=NEW)
    assert result.returncode == 1
    assert "left untouched" in result.stderr
    calls = host.calls()
    assert not [c for c in calls if c.startswith(("docker run", "docker stop", "docker rm", "docker exec"))], calls
    assert host.live() == OLD
    assert not (host.state_dir / "previous-image").exists()


def test_unready_candidate_is_removed_and_old_container_keeps_serving(host):
    result = host.run("deploy", NEW, FAKE_CANDIDATE_UNHEALTHY=NEW)
    assert result.returncode == 1
    assert len([c for c in host.calls() if c.startswith("docker exec recordings-candidate")]) == 3
    assert "docker rm --force recordings-candidate" in host.calls()
    assert not host.docker_calls("stop"), "the live container must not be stopped"
    assert host.live() == OLD


def test_failed_health_after_switch_rolls_back_to_the_previous_image(host):
    result = host.run("deploy", NEW, FAKE_HTTP_UNHEALTHY=NEW)
    assert result.returncode == 1
    assert "rolled back to" in result.stderr
    live_runs = [c for c in host.docker_calls("run") if "--name recordings " in c]
    assert [run.rsplit(" ", 1)[1] for run in live_runs] == [NEW, OLD]
    assert "docker logs --tail 100 recordings" in host.calls()
    assert host.live() == OLD
    assert (host.state_dir / "current-image").read_text().strip() == OLD


def test_failed_rollback_exits_2(host):
    result = host.run("deploy", NEW, FAKE_HTTP_UNHEALTHY=f"{NEW},{OLD}")
    assert result.returncode == 2
    assert "rollback" in result.stderr


def test_rollback_mode_returns_to_the_previous_image(host):
    assert host.run("deploy", NEW).returncode == 0
    # The registry is unreachable during the rollback: the local copy of the old image is used.
    result = host.run("rollback", FAKE_FAIL_PULL=OLD)
    assert result.returncode == 0, result.stderr
    assert f"docker image inspect {OLD}" in host.calls()
    assert host.live() == OLD
    assert (host.state_dir / "current-image").read_text().strip() == OLD
    assert (host.state_dir / "previous-image").read_text().strip() == NEW


def test_rollback_without_history_fails_cleanly(host):
    result = host.run("rollback")
    assert result.returncode == 1
    assert "no previous image" in result.stderr
    assert not host.calls()


def test_first_deploy_takes_over_from_the_boot_unit(host):
    result = host.run("deploy", NEW, FAKE_UNIT_ENABLED="1")
    assert result.returncode == 0, result.stderr
    calls = host.calls()
    disable = calls.index("systemctl disable --now recordings.service")
    start = next(i for i, c in enumerate(calls) if c.startswith("docker run --detach --name recordings --restart"))
    assert disable < start


def test_usage_errors(host):
    assert host.run().returncode == 64
    assert host.run("deploy").returncode == 64
    assert host.run("explode").returncode == 64


def test_redeploying_the_running_image_is_a_no_op(host):
    result = host.run("deploy", OLD)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stderr
    assert not [c for c in host.calls() if c.startswith(("docker pull", "docker run", "docker stop"))]
    assert (host.state_dir / "current-image").read_text().strip() == OLD


def test_run_arguments_come_from_the_hosts_file(host):
    args_file = host.root / "docker-run-args"
    args_file.write_text("--log-driver awslogs --log-opt awslogs-group=/recordings/prod/app\n")
    result = host.run("deploy", NEW, RECORDINGS_RUN_ARGS_FILE=str(args_file))
    assert result.returncode == 0, result.stderr
    live_run = [c for c in host.docker_calls("run") if "--name recordings " in c][-1]
    assert "--log-driver awslogs --log-opt awslogs-group=/recordings/prod/app " in live_run


def test_rollback_after_latest_moved_returns_to_the_digest_that_ran_before(host):
    """A host booted from `repo:latest`; CI deploys a new digest and then moves `latest` to it. The
    rollback must run what `latest` meant at boot, not what it means now."""
    fake = host.root / "fake"
    (fake / "live").write_text(f"{REPOSITORY}:latest\n")
    (fake / "tags").write_text(f"{_image_id(OLD_DIGEST)} {REPOSITORY}:latest\n")
    assert host.run("deploy", NEW).returncode == 0
    assert (host.state_dir / "previous-image").read_text().strip() == OLD
    (fake / "registry").write_text(f"{REPOSITORY}:latest {NEW_DIGEST}\n")  # CI marks the new image

    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert (fake / "live-id").read_text().strip() == _image_id(OLD_DIGEST)
    assert host.live() == OLD
    assert not [c for c in host.calls() if c.endswith(f"{REPOSITORY}:latest")], host.calls()


def test_worst_case_counts_every_wait(host):
    result = host.run(
        "worst-case",
        RECORDINGS_PULL_TIMEOUT="100",
        RECORDINGS_HEALTH_ATTEMPTS="10",
        RECORDINGS_HEALTH_INTERVAL="2",
        RECORDINGS_STOP_TIMEOUT="30",
    )
    assert result.returncode == 0, result.stderr
    # pull + three health waits (candidate, switch, rollback) of 10 x (3 s probe + 2 s) + two stops
    assert int(result.stdout) >= 100 + 3 * 10 * 5 + 2 * 30
    assert not host.calls(), "worst-case only computes"


# --- rollout.sh: the CI side, with the strict fake aws CLI (tests/ops/fake_aws.py) -----------------

ROLLOUT = REPO / "ops" / "deploy" / "rollout.sh"
FAKE_AWS_PY = Path(__file__).with_name("fake_aws.py")


@dataclass
class Ci(Host):
    def state(self) -> dict:
        return json.loads((self.root / "aws-state.json").read_text())

    def events(self) -> list[str]:
        return self.state()["events"]

    def update(self, **state: object) -> None:
        current = self.state()
        current.update(state)
        (self.root / "aws-state.json").write_text(json.dumps(current))

    def rollout(self, *args: str, **state: object) -> subprocess.CompletedProcess:
        self.update(**state)
        (self.root / "calls.log").unlink(missing_ok=True)
        return subprocess.run(["bash", str(ROLLOUT), *args], env=self.env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def ci(tmp_path) -> Ci:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "aws": f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_AWS_PY}" "$@"\n',
        "curl": '#!/usr/bin/env bash\necho "curl ${*: -1}" >>"$FAKE_LOG"\n[[ -z $FAKE_SERVICE_DOWN ]]\n',
        "sleep": "#!/bin/sh\nexit 0\n",  # the waits are counted, not slept
    }.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    state = {
        "instances": ["i-aaa", "i-bbb"],
        "targets": {"i-aaa": {"state": "healthy", "polls": 0}, "i-bbb": {"state": "healthy", "polls": 0}},
        "drain_polls": 2,
        "initial_polls": 2,
        "lb_unhealthy": [],
        "failing_hosts": [],
        "commands": {},
        "events": [],
    }
    (tmp_path / "aws-state.json").write_text(json.dumps(state))
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_AWS_STATE": str(tmp_path / "aws-state.json"),
        "STACK_PREFIX": "Recordings-prod",
        "ROLLOUT_HEALTH_ATTEMPTS": "2",
        "FAKE_SERVICE_DOWN": "",
    }
    return Ci(root=tmp_path, env=env)


def test_rollout_drains_deploys_and_waits_healthy_one_host_at_a_time(ci):
    result = ci.rollout("deploy", NEW)
    assert result.returncode == 0, result.stderr
    assert ci.events() == [
        "deregister i-aaa",
        "drained i-aaa",
        "send i-aaa (load balancer: unused)",
        "register i-aaa",
        "healthy i-aaa",
        "deregister i-bbb",
        "drained i-bbb",
        "send i-bbb (load balancer: unused)",
        "register i-bbb",
        "healthy i-bbb",
    ]
    commands = list(ci.state()["commands"].values())
    assert commands[0]["commands"][-1] == f"/opt/recordings/deploy.sh deploy {NEW}"
    sends = [c for c in ci.calls() if c.startswith("aws ssm send-command")]
    assert all("--document-name AWS-RunShellScript" in c for c in sends)
    assert ci.calls()[-1] == "curl https://api.example.com/health/ready"


def test_ssm_gets_more_time_than_deploy_sh_can_take(ci):
    assert ci.rollout("deploy", NEW).returncode == 0
    worst = subprocess.run(["bash", str(SCRIPT), "worst-case"], capture_output=True, text=True, check=True)
    for command in ci.state()["commands"].values():
        assert command["execution_timeout"] > int(worst.stdout)


def test_rollout_stops_at_the_first_failed_host_and_puts_it_back(ci):
    result = ci.rollout("deploy", NEW, failing_hosts=["i-aaa"])
    assert result.returncode == 1
    assert ci.events() == [
        "deregister i-aaa",
        "drained i-aaa",
        "send i-aaa (load balancer: unused)",
        "register i-aaa",
        "healthy i-aaa",
    ]
    assert not [c for c in ci.calls() if c.startswith("curl")]


def test_a_host_the_load_balancer_calls_unhealthy_stops_the_rollout(ci):
    result = ci.rollout("deploy", NEW, lb_unhealthy=["i-aaa"])
    assert result.returncode == 1
    assert "unhealthy" in result.stderr
    assert not [e for e in ci.events() if "i-bbb" in e]


def test_a_rejected_send_command_fails_at_once(ci):
    result = ci.rollout("deploy", NEW, send_fails=True)
    assert result.returncode == 1
    assert "send-command failed" in result.stderr
    assert not [c for c in ci.calls() if c.startswith("aws ssm get-command-invocation")]
    assert ci.events()[-1] == "healthy i-aaa", "the drained host is registered again"


def test_ssm_comment_fits_the_service_limit_with_a_generated_repository_name(ci):
    # CDK names the repository after the stack and construct path plus a hash.
    generated = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recordings-prod-data-repository22e53bbd-9tyaa5bwrcak"
    result = ci.rollout("deploy", f"{generated}@{NEW_DIGEST}")
    assert result.returncode == 0, result.stderr
    comments = [re.search(r"--comment (.*?) --timeout-seconds", c)[1] for c in ci.calls() if "send-command" in c]
    assert len(comments) == 2
    assert all(NEW_DIGEST[:19] in c and len(c) <= 100 for c in comments)


def test_rollout_refuses_a_tag(ci):
    result = ci.rollout("deploy", f"{REPOSITORY}:latest")
    assert result.returncode == 64
    assert not ci.events()


def test_rollout_fails_when_the_service_is_unhealthy_afterwards(ci):
    ci.env["FAKE_SERVICE_DOWN"] = "1"
    result = ci.rollout("deploy", NEW)
    assert result.returncode == 1
    assert len([c for c in ci.calls() if c.startswith("curl")]) == 2


def test_rollout_worst_case_grows_with_the_hosts(ci):
    one = int(ci.rollout("worst-case", "1").stdout)
    four = int(ci.rollout("worst-case", "4").stdout)
    worst = int(subprocess.run(["bash", str(SCRIPT), "worst-case"], capture_output=True, text=True).stdout)
    assert one > worst
    assert four > 4 * worst


def test_rollout_shellcheck_is_clean():
    result = subprocess.run([tool("shellcheck"), str(ROLLOUT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


# --- release.sh: registry and digest parameter, with the same fake aws ------------------------------

RELEASE = REPO / "ops" / "deploy" / "release.sh"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recordings-prod-repository"
PARAMETER = "/recordings/prod/image-digest"


@pytest.fixture
def release(ci: Ci) -> Ci:
    docker = ci.root / "bin" / "docker"
    docker.write_text(
        f'#!/bin/sh\ncase $1 in tag|push) exec "{sys.executable}" "{FAKE_AWS_PY}" fake-docker "$@";; esac\n'
    )
    docker.chmod(0o755)
    ci.env.update(DIGEST_PARAMETER=PARAMETER, REPOSITORY=ECR)
    ci.update(stacks=["Recordings-prod-data"], local_images={"recordings:server-abc": NEW_DIGEST}, registry={})
    return ci


def _release(ci: Ci, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RELEASE), *args], env=ci.env, capture_output=True, text=True, timeout=60)


def test_a_first_release_has_nothing_to_roll_back_to(release):
    result = _release(release, "deployed")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert _release(release, "repository").stdout.strip() == ECR


def test_the_repository_is_read_only_once_its_stack_exists(release):
    release.update(stacks=[])  # a fresh account: no stack yet
    result = _release(release, "repository")
    assert result.returncode != 0
    assert "does not exist" in result.stderr


def test_push_names_the_image_by_digest_and_record_makes_new_hosts_boot_it(release):
    pushed = _release(release, "push", "recordings:server-abc", "abc")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == f"{ECR}@{NEW_DIGEST}"
    assert _release(release, "record", pushed.stdout.strip()).returncode == 0
    assert release.state()["parameters"] == {PARAMETER: NEW_DIGEST}
    assert _release(release, "deployed").stdout.strip() == f"{ECR}@{NEW_DIGEST}"
    refused = _release(release, "record", f"{ECR}:latest")
    assert refused.returncode == 64
    assert release.state()["parameters"] == {PARAMETER: NEW_DIGEST}


def test_marking_latest_again_after_a_green_deploy_succeeds(release):
    image = _release(release, "push", "recordings:server-abc", "abc").stdout.strip()
    first = _release(release, "mark-latest", image)
    again = _release(release, "mark-latest", image)  # a re-run of the same green deploy
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert release.state()["registry"]["latest"] == NEW_DIGEST
    assert [e for e in release.events() if e.startswith("tag ")] == [f"tag latest={NEW_DIGEST}"]


def test_release_shellcheck_is_clean():
    result = subprocess.run([tool("shellcheck"), str(RELEASE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


# --- drift-check.sh: the scheduled drift detection, with the same fake aws ---------------------------

DRIFT = REPO / "ops" / "maintenance" / "drift-check.sh"
STACKS = ["Recordings-prod-data", "Recordings-prod-ec2", "Recordings-dev-data"]


def _drift(ci: Ci, **state: object) -> subprocess.CompletedProcess:
    ci.update(stacks=STACKS, **state)
    return subprocess.run(["bash", str(DRIFT)], env=ci.env, capture_output=True, text=True, timeout=60)


def test_drift_check_passes_when_every_stack_is_in_sync(ci):
    result = _drift(ci, detection_polls=2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "Recordings-prod-data: DETECTION_COMPLETE IN_SYNC",
        "Recordings-prod-ec2: DETECTION_COMPLETE IN_SYNC",
    ]


def test_drift_check_fails_on_a_drifted_stack_and_names_the_resources(ci):
    result = _drift(ci, drifted=["Recordings-prod-ec2"])
    assert result.returncode == 1
    assert "AWS::RDS::DBInstance" in result.stdout


def test_drift_check_fails_when_detection_fails_or_never_finishes(ci):
    assert _drift(ci, undetectable=["Recordings-prod-data"]).returncode == 2
    ci.env["DRIFT_DETECTION_TIMEOUT"] = "30"
    result = _drift(ci, detection_polls=1000, undetectable=[])
    assert result.returncode == 2
    assert "still in progress after 30s" in result.stdout


def test_drift_check_fails_without_stacks(ci):
    ci.update(stacks=[])
    result = subprocess.run(["bash", str(DRIFT)], env=ci.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no stacks named Recordings-prod-*" in result.stderr
