"""Requests sent from inside a pod, as the tutorial's ``kubectl exec ... curl`` does.

The sample image has Python but no curl, so the request is a short Python program run with
``kubectl exec`` in the app container. A request to ``localhost:8080`` reaches the app directly
(loopback bypasses the sidecar, so misbehave/delay work under any policy); a request to another
service leaves through the pod's sidecar, so routing, mTLS and authorization apply.

Example::

    argv = exec_argv("kind-meshkit", "tutorial", "recommendation-v2-7c9f-abcde", "recommendation",
                     "http://localhost:8080/misbehave")
    status, body = parse_output(*runner(argv, 30))
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from meshkit.errors import MeshkitError

# prints "<status>\n<body>"; HTTP errors are answers too (a 503 is what misbehave is for)
REQUEST_PROGRAM = (
    "import json, sys, urllib.error, urllib.request\n"
    "req = urllib.request.Request(sys.argv[1], method=sys.argv[2], headers=json.loads(sys.argv[3]))\n"
    "try:\n"
    "    resp = urllib.request.urlopen(req, timeout=float(sys.argv[4]))\n"
    "    code, body = resp.status, resp.read()\n"
    "except urllib.error.HTTPError as err:\n"
    "    code, body = err.code, err.read()\n"
    "sys.stdout.write(str(code) + '\\n' + body.decode('utf-8', 'replace'))\n"
)


def exec_argv(
    context: str,
    namespace: str,
    pod: str,
    container: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    timeout_s: float = 20.0,
) -> list[str]:
    """The ``kubectl exec`` command that sends one request from ``container`` of ``pod``."""
    return [
        "kubectl",
        "--context",
        context,
        "-n",
        namespace,
        "exec",
        pod,
        "-c",
        container,
        "--",
        "python",
        "-c",
        REQUEST_PROGRAM,
        url,
        method.upper(),
        json.dumps(dict(headers or {})),
        str(timeout_s),
    ]


def parse_output(code: int, out: str, *, pod: str = "", url: str = "") -> tuple[int, str]:
    """(HTTP status, body) from the program's output, or a MeshkitError saying what went wrong."""
    head, _, body = out.partition("\n")
    if code == 0 and head.strip().isdigit():
        return int(head), body
    last = out.strip().splitlines()[-1] if out.strip() else f"exit code {code}"
    if "URLError" in out or "ConnectionRefused" in out or "timed out" in out:
        return 0, last  # no HTTP answer at all: the caller sees status 0, as for a reset connection
    raise MeshkitError(
        f"could not send {url} from pod {pod}: {last}. Check the pod is running with: meshkit status "
        "(kubectl exec needs the pod to be Running and your user to be allowed pods/exec)"
    )
