"""The instructor's kit without a mesh: progress files, ``meshkit class`` (paths and a hub's API),
the backend choice from every door, and ``meshkit doctor``'s verdicts."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.backends import choice
from meshkit.cli import build_parser, main
from meshkit.cli.workshop import class_table, learner_homes
from meshkit.doctor import check_memory, check_server_proxy, run_checks
from meshkit.errors import MeshkitError
from meshkit.lab import progress


def simulate(home: Path, lab: str, checks: list[tuple[str, bool]], start: float, every_s: float = 60.0) -> None:
    for i, (name, ok) in enumerate(checks):
        progress.record(lab, name, ok, seen="simulated", where=home, clock=start + i * every_s)


@pytest.fixture
def classroom(tmp_path: Path) -> tuple[Path, float]:
    """Three learners: alice well into lab 02, bob early in lab 01, carol failing lab 02's step 3."""
    now = time.time()
    simulate(tmp_path / "jupyter-alice" / ".meshkit", "02_resiliency",
             [("load_balancing", True), ("fails", True), ("succeeds", True), ("timeout", True),
              ("succeeds", True), ("circuit_breaker", True)], now - 400)
    simulate(tmp_path / "jupyter-bob" / ".meshkit", "01_traffic_control",
             [("all_to", True), ("canary", True)], now - 200)
    simulate(tmp_path / "jupyter-carol" / ".meshkit", "02_resiliency",
             [("load_balancing", True), ("fails", True), ("succeeds", True), ("timeout", False),
              ("timeout", False), ("timeout", False)], now - 300)
    return tmp_path, now


def test_checks_record_lab_step_outcome_and_time(tmp_path: Path) -> None:
    line = progress.record("02_resiliency", "circuit_breaker", True, "36 overflows", where=tmp_path, clock=100.0)
    assert line == {"t": 100.0, "lab": "02_resiliency", "step": 4, "check": "circuit_breaker", "ok": True,
                    "seen": "36 overflows"}
    # a check that appears in several steps belongs to the first one at or after the learner's step
    progress.record("02_resiliency", "succeeds", True, where=tmp_path, clock=101.0)
    assert progress.read(tmp_path / progress.FILE)[-1]["step"] == 4
    (tmp_path / progress.FILE).open("a").write("not json\n" + "x" * 10_000 + "\n")
    assert len(progress.read(tmp_path / progress.FILE)) == 2  # garbage lines are skipped


def test_class_shows_three_learners_at_different_steps_one_stuck(classroom: tuple[Path, float],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    root, now = classroom
    homes = learner_homes([str(root / "jupyter-*" / ".meshkit")])
    assert sorted(homes) == ["alice", "bob", "carol"]
    table = {row[0]: row for row in class_table(homes, now, stuck_after_s=600)[1:]}
    assert (table["alice"][1], table["alice"][2], table["alice"][3]) == ("02_resiliency", "4", "✓")
    assert (table["bob"][1], table["bob"][2]) == ("01_traffic_control", "2")
    assert table["carol"][2] == "3" and table["carol"][3] == "✗"
    assert table["carol"][6] == "STUCK: 3 failed checks in a row at step 3"
    assert not table["alice"][6] and not table["bob"][6]
    assert main(["class", "--homes", str(root / "jupyter-*" / ".meshkit")]) == 0
    out = capsys.readouterr().out
    assert "3 learners, 1 stuck" in out
    artifacts = Path(__file__).resolve().parents[2] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "meshkit-class.txt").write_text(out)


def test_a_silent_learner_is_flagged_after_the_idle_limit(classroom: tuple[Path, float]) -> None:
    root, now = classroom
    homes = learner_homes([str(root / "jupyter-*" / ".meshkit")])
    later = {row[0]: row[6] for row in class_table(homes, now + 3600, stuck_after_s=600)[1:]}
    assert later["bob"].startswith("STUCK: no check for")


@pytest.fixture
def hub() -> Iterator[str]:
    """A JupyterHub API on 127.0.0.1 answering GET /hub/api/users for one token, as the hub does."""

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.headers.get("Authorization") != "token s3cret":
                self.send_response(403)
                self.end_headers()
                return
            body = json.dumps([{"name": "alice", "kind": "user"}, {"name": "dave", "kind": "user"}]).encode()
            self.send_response(200 if self.path == "/hub/api/users" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_class_reads_learners_from_the_hubs_api(hub: str, classroom: tuple[Path, float]) -> None:
    root, now = classroom
    homes = learner_homes([], hub, "s3cret", str(root / "jupyter-{name}" / ".meshkit"))
    assert homes == {"alice": root / "jupyter-alice" / ".meshkit", "dave": root / "jupyter-dave" / ".meshkit"}
    table = {row[0]: row for row in class_table(homes, now, 600)[1:]}
    assert table["dave"][6] == "STUCK: no check run yet"  # logged in, never ran a check
    with pytest.raises(MeshkitError, match="did not list its users"):
        learner_homes([], hub, "wrong")


def test_backend_flags_are_accepted_after_the_verb_too() -> None:
    parser = build_parser()
    after = parser.parse_args(["up", "--backend", "kind", "--dry-run"])
    before = parser.parse_args(["--backend", "kind", "up", "--dry-run"])
    assert after.backend == before.backend == "kind" and after.dry_run
    both = parser.parse_args(["--context", "ctx", "status", "--namespace", "alice"])
    assert (both.context, both.namespace) == ("ctx", "alice")
    kept = parser.parse_args(["--backend", "kube", "status"])  # not repeated after the verb: kept
    assert kept.backend == "kube"


def test_backend_choice_precedence_and_the_home_remembers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in choice.ENV.values():
        monkeypatch.delenv(var, raising=False)
    assert choice.resolve(home=tmp_path).backend == "local"
    choice.remember(choice.Choice("kube", "workshop", "alice", str(tmp_path)))
    remembered = choice.resolve(home=tmp_path)
    assert (remembered.backend, remembered.context, remembered.namespace) == ("kube", "workshop", "alice")
    monkeypatch.setenv("MESHKIT_NAMESPACE", "bob")  # a hub's variable beats the home's memory
    assert choice.resolve(home=tmp_path).namespace == "bob"
    assert choice.resolve(namespace="carol", home=tmp_path).namespace == "carol"  # explicit beats both
    assert choice.resolve("local", home=tmp_path).context is None  # the memory is kube's, not local's
    with pytest.raises(MeshkitError, match="the kube backend needs a context and a namespace"):
        choice.Choice("kube", None, "alice").options()


def test_doctor_gives_a_verdict_per_line() -> None:
    assert str(check_memory(0.5)).startswith("✗ memory: 0.5 GB available")
    assert str(check_memory(0.8)).startswith("⚠")
    assert str(check_memory(4.0)).startswith("✓")
    lines = [str(v) for v in run_checks("local", request=False)]
    assert [line.split(" ", 2)[1] for line in lines] == ["Python", "lab", "jupyter-server-proxy", "ports:", "memory:",
                                                         "CPU:", "backend"]
    assert all(line[0] in "✓⚠✗" for line in lines)
    assert str(check_server_proxy("4.6.0")).startswith("✓ jupyter-server-proxy 4.6.0")
    assert str(check_server_proxy("4.1.0")).startswith("⚠ jupyter-server-proxy 4.1.0: older than 4.2")
    assert str(check_server_proxy(None)).startswith("⚠ jupyter-server-proxy not installed")
