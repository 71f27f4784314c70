"""Access logs as ``meshkit logs POD -c istio-proxy`` prints them, and no credential in any output."""

from __future__ import annotations

import json
from pathlib import Path

from meshkit.backends.local.proxy.accesslog import parse_line
from meshkit.mesh import Mesh
from tests.observability.conftest import cli, records_of

TOKEN = "secret-token-123"


def test_access_log_lines_parse_and_carry_the_request_id(clean: Mesh) -> None:
    result = clean.load(n=1, headers={"authorization": f"Bearer {TOKEN}"}, flags=False)
    (sent,) = result.records
    assert sent["code"] == 200
    rid, answered_by = sent["request_id"], sent["pod"]
    records_of(clean, rid, 6)
    # the pods on the request's path and the lines each proxy wrote for it: (reporter side, authority)
    path = {p.name: p.app for p in clean.pods() if p.app != "recommendation" or p.name == answered_by}
    expected = {
        "istio-ingressgateway": 1,  # the gateway's client side only
        "customer": 2,  # inbound from the gateway, outbound to preference
        "preference": 2,
        "recommendation": 1,
    }
    outputs = []
    for pod, app in path.items():
        out = cli(clean, "logs", pod, "-c", "istio-proxy")
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout + out.stderr)
        lines = out.stdout.splitlines()
        assert lines, f"{pod} has no access log"
        parsed = [parse_line(line) for line in lines]
        mine = [p for p in parsed if p["request_id"] == rid]
        assert len(mine) == expected[app], (pod, mine)
        for p in mine:
            assert (p["method"], p["response_code"], p["response_flags"]) == ("GET", 200, "-")
            assert p["response_code_details"] == "via_upstream"
            assert p["upstream_cluster"].startswith(("outbound|8080|", "inbound|8080|"))
        if app == "istio-ingressgateway":
            assert mine[0]["path"] == "/customer" and mine[0]["user_agent"] == "meshkit-load"
            assert mine[0]["upstream_cluster"] == "outbound|8080||customer.tutorial.svc.cluster.local"
        if app == "preference":
            assert {p["authority"] for p in mine} == {"preference:8080", "recommendation:8080"}

    # the token went in with the request; it must come out of nothing the mesh reports
    for pod in (name for name, app in path.items() if app != "istio-ingressgateway"):  # no app container there
        app_log = cli(clean, "logs", pod)
        assert app_log.returncode == 0, app_log.stderr
        outputs.append(app_log.stdout + app_log.stderr)
    for verb in (["metrics"], ["traces", "--limit", "20", "-o", "json"], ["graph", "-o", "json"], ["explain"],
                 ["status", "-o", "json"]):
        out = cli(clean, *verb)
        assert out.returncode == 0, (verb, out.stderr)
        outputs.append(out.stdout + out.stderr)
    outputs.append(json.dumps(clean.request_log(0)))
    outputs.append(json.dumps(clean.traces(limit=100)))
    home = Path(clean.backend.home)  # type: ignore[attr-defined]
    outputs += [f.read_text(errors="replace") for f in home.rglob("*") if f.is_file()]
    assert rid in "".join(outputs)  # the request is in there ...
    for text in outputs:
        assert TOKEN not in text and "Bearer" not in text  # ... its credential is not
