"""ops/deploy/deploy.sh against fake `docker`, `curl`, `systemctl` and `aws` commands that record
every call and fail on demand. The fake docker keeps which image the live container runs, so the
fake curl answers like the live container would."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.conftest import REPO, tool

SCRIPT = REPO / "ops" / "deploy" / "deploy.sh"
OLD = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recordings:old"
NEW = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recordings:new"

FAKE_DOCKER = r"""#!/usr/bin/env bash
# Records the call; fails when told to; remembers what the live container runs.
echo "docker $*" >>"$FAKE_LOG"
state=$FAKE_STATE
case $1 in
  inspect)
    [[ -s $state/live ]] || exit 1
    cat "$state/live" ;;
  pull)
    image=${*: -1}
    [[ ",$FAKE_FAIL_PULL," == *",$image,"* ]] && { echo "pull access denied" >&2; exit 1; }
    exit 0 ;;
  image) exit 0 ;;
  login) cat >/dev/null; exit 0 ;;
  run)
    name="" image=${*: -1}
    while [[ $# -gt 0 ]]; do [[ $1 == --name ]] && name=$2; shift; done
    [[ ",$FAKE_FAIL_RUN," == *",$image,"* ]] && exit 125
    [[ $name == recordings ]] && echo "$image" >"$state/live"
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
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "live").write_text(OLD + "\n")  # the host runs the old image
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


# --- rollout.sh: the CI side, with a fake aws CLI ----------------------------------------------

ROLLOUT = REPO / "ops" / "deploy" / "rollout.sh"

FAKE_AWS_ROLLOUT = r"""#!/usr/bin/env bash
echo "aws $*" >>"$FAKE_LOG"
case "$1 $2" in
  "cloudformation describe-stacks")
    [[ $* == *AutoScalingGroupName* ]] && echo "recordings-asg" || echo "https://api.example.com" ;;
  "autoscaling describe-auto-scaling-groups") echo "i-aaa	i-bbb" ;;
  "ssm send-command")
    [[ $* == *i-aaa* ]] && echo "cmd-aaa" || echo "cmd-bbb" ;;
  "ssm get-command-invocation")
    if [[ $* == *"--query Status"* ]]; then
      [[ $* == *"$FAKE_FAILING_HOST"* && -n $FAKE_FAILING_HOST ]] && echo Failed || echo Success
    else
      echo "deploy output"
    fi ;;
esac
"""


@pytest.fixture
def ci(tmp_path) -> Host:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "aws": FAKE_AWS_ROLLOUT,
        "curl": '#!/usr/bin/env bash\necho "curl ${*: -1}" >>"$FAKE_LOG"\n[[ -z $FAKE_SERVICE_DOWN ]]\n',
    }.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "STACK_PREFIX": "Recordings-prod",
        "ROLLOUT_POLL_SECONDS": "0",
        "ROLLOUT_HEALTH_ATTEMPTS": "2",
        "ROLLOUT_HEALTH_INTERVAL": "0",
        "FAKE_FAILING_HOST": "",
        "FAKE_SERVICE_DOWN": "",
    }
    return Host(root=tmp_path, env=env)


def _rollout(ci: Host, *args: str, **fake: str) -> subprocess.CompletedProcess:
    (ci.root / "calls.log").unlink(missing_ok=True)
    return subprocess.run(
        ["bash", str(ROLLOUT), *args], env={**ci.env, **fake}, capture_output=True, text=True, timeout=60
    )


def test_rollout_deploys_host_by_host_through_ssm_then_checks_the_service(ci):
    result = _rollout(ci, "deploy", NEW)
    assert result.returncode == 0, result.stderr
    calls = ci.calls()
    sends = [c for c in calls if c.startswith("aws ssm send-command")]
    assert [("i-aaa" in c, "i-bbb" in c) for c in sends] == [(True, False), (False, True)]
    assert all("--document-name AWS-RunShellScript" in c for c in sends)
    assert f"/opt/recordings/deploy.sh deploy {NEW}" in sends[0]
    assert calls[-1] == "curl https://api.example.com/health/ready"


def test_rollout_stops_at_the_first_failed_host(ci):
    result = _rollout(ci, "deploy", NEW, FAKE_FAILING_HOST="cmd-aaa")
    assert result.returncode == 1
    assert len([c for c in ci.calls() if c.startswith("aws ssm send-command")]) == 1
    assert not [c for c in ci.calls() if c.startswith("curl")]


def test_rollout_fails_when_the_service_is_unhealthy_afterwards(ci):
    result = _rollout(ci, "deploy", NEW, FAKE_SERVICE_DOWN="1")
    assert result.returncode == 1
    assert len([c for c in ci.calls() if c.startswith("curl")]) == 2


def test_rollout_shellcheck_is_clean():
    result = subprocess.run([tool("shellcheck"), str(ROLLOUT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
