"""Verbs for workshops: ``lab`` (open, reset, goto), ``class`` (the instructor's view) and ``doctor``.

Example::

    meshkit lab                      # JupyterLab on the labs, news and update checks off
    meshkit lab goto 02 4            # the mesh as lab 02's solutions leave it after step 4
    meshkit lab reset 02             # back to the lab's start
    meshkit class --homes '/home/jupyter-*/.meshkit'
    meshkit doctor
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from meshkit.cli.common import _mesh, _print
from meshkit.errors import MeshkitError

SETTINGS = Path(__file__).resolve().parents[1] / "lab" / "jupyterlab"


def jupyterlab_args(root: Path, first: str = "labs/00_setup.ipynb") -> list[str]:
    """The options ``meshkit lab`` gives JupyterLab: the labs' folder, the first lab opened, no news
    prompt and no update check (``overrides.json`` shipped with meshkit, and the server side too)."""
    return [f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1", f"--LabApp.default_url=/lab/tree/{first}",
            f"--LabApp.app_settings_dir={SETTINGS}", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]


def cmd_lab(args: argparse.Namespace) -> int:
    from meshkit.lab import replay

    action = args.action or ("reset" if args.reset else "open")
    if action == "reset" or args.reset:
        mesh = _mesh(args)
        lines = replay.reset(mesh)
        which = f"lab {args.lab} " if args.lab else ""
        _print(f"{which}reset: {len(lines)} Istio resources removed (the ingress gateway's kept); "
               "one healthy replica per deployment")
        return 0
    if action == "goto":
        if not args.lab or args.step is None:
            raise MeshkitError("usage: meshkit lab goto LAB STEP   (e.g. meshkit lab goto 02 4)")
        mesh = _mesh(args)
        replay.goto(mesh, args.lab, args.step, fast=args.fast)
        names = ", ".join(f"{r['kind'].lower()}/{r['metadata']['name']}" for r in mesh.get()) or "none"
        _print(f"lab {args.lab} at the end of step {args.step}: resources {names}")
        return 0
    labs = Path(__file__).resolve().parents[2] / "labs"
    if not labs.is_dir():
        labs = Path.cwd() / "labs"
    cmd = [sys.executable, "-m", "jupyter", "lab", *jupyterlab_args(labs.parent)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    os.execv(sys.executable, cmd)
    return 0


def add_verbs(sub: argparse._SubParsersAction) -> None:
    la = sub.add_parser("lab", help="open JupyterLab on the labs; lab goto LAB STEP; lab reset [LAB]",
                        description="open JupyterLab on the labs (no action), bring the mesh to the end of a "
                                    "lab's step (goto LAB STEP), or back to a lab's start (reset [LAB])")
    la.add_argument("action", nargs="?", choices=["open", "goto", "reset"])
    la.add_argument("lab", nargs="?", help="02 or 02_resiliency")
    la.add_argument("step", nargs="?", type=int, help="goto: the step (the lab's '## N ·' section)")
    la.add_argument("--fast", action="store_true", help="goto: replay with the labs' FAST time scale")
    la.add_argument("--reset", action="store_true", help="same as 'lab reset'")
    la.set_defaults(func=cmd_lab)


# -- the instructor's view ----------------------------------------------------------------------------
def learner_homes(globs: list[str], hub: str | None = None, token: str | None = None,
                  template: str = "/home/jupyter-{name}/.meshkit") -> dict[str, Path]:
    """learner → mesh home, from path globs and/or the hub's user list (``GET /hub/api/users``)."""
    import glob
    import json
    import urllib.request

    homes: dict[str, Path] = {}
    for pattern in globs:
        for match in sorted(glob.glob(os.path.expanduser(pattern))):
            path = Path(match)
            home = path.parent if path.name == "progress.jsonl" else path
            homes[_learner_name(home)] = home
    if hub:
        req = urllib.request.Request(hub.rstrip("/") + "/hub/api/users",
                                     headers={"Authorization": f"token {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                users = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise MeshkitError(f"the hub at {hub} did not list its users: {exc}") from None
        for user in users if isinstance(users, list) else []:
            name = str(user.get("name", "")) if isinstance(user, dict) else ""
            if name and name not in homes:
                homes[name] = Path(template.format(name=name))
    return homes


def _learner_name(home: Path) -> str:
    # /home/jupyter-alice/.meshkit -> alice; /srv/class/bob -> bob
    owner = home.parent if home.name.startswith(".") else home
    return owner.name.removeprefix("jupyter-")


def class_table(homes: dict[str, Path], now: float, stuck_after_s: float) -> list[tuple[str, ...]]:
    from meshkit.lab import progress

    rows: list[tuple[str, ...]] = [("LEARNER", "LAB", "STEP", "LAST", "PASSED", "SEEN", "FLAG")]
    for name in sorted(homes):
        lines = progress.read(homes[name] / progress.FILE)
        rows.append(progress.status(name, lines, now, stuck_after_s=stuck_after_s).row(now))
    return rows


def cmd_class(args: argparse.Namespace) -> int:
    import time

    from meshkit.cli.common import _table

    if not args.homes and not args.hub:
        raise MeshkitError("say where the learners are: --homes '/home/jupyter-*/.meshkit' and/or --hub URL")
    while True:
        homes = learner_homes(args.homes or [], args.hub, args.token or os.environ.get("JUPYTERHUB_API_TOKEN"),
                              args.home_template)
        table = class_table(homes, time.time(), args.stuck_after * 60)
        if args.watch:
            print("\033[2J\033[H", end="")
        _table(table)
        stuck = sum(1 for row in table[1:] if row[-1])
        _print(f"{len(table) - 1} learners, {stuck} stuck")
        if not args.watch:
            return 0
        time.sleep(args.watch)


def add_class_verb(sub: argparse._SubParsersAction) -> None:
    cl = sub.add_parser("class", help="the instructor's view: every learner's lab, step and last check, "
                                      "stuck learners flagged",
                        description="Read each learner's progress (written by the labs' checks into their mesh "
                                    "home) and show a table; --watch refreshes it.")
    cl.add_argument("--homes", action="append", help="glob of learners' mesh homes (repeatable)")
    cl.add_argument("--hub", help="JupyterHub URL: list learners with its API (token: --token or "
                                  "$JUPYTERHUB_API_TOKEN)")
    cl.add_argument("--token")
    cl.add_argument("--home-template", default="/home/jupyter-{name}/.meshkit",
                    help="a hub user's mesh home (TLJH's default shown)")
    cl.add_argument("--stuck-after", type=float, default=10.0, help="minutes without a check (default 10)")
    cl.add_argument("--watch", type=float, default=0.0, help="refresh every SECONDS")
    cl.set_defaults(func=cmd_class)


def cmd_doctor(args: argparse.Namespace) -> int:
    from meshkit.doctor import run_checks

    failed = 0
    for verdict in run_checks(args.backend, args.home, request=not args.no_request):
        _print(str(verdict))
        failed += verdict.failed
    _print("ready for the labs" if not failed else f"{failed} problem(s): fix the ✗ lines before the class")
    return 1 if failed else 0


def add_doctor_verb(sub: argparse._SubParsersAction) -> None:
    dr = sub.add_parser("doctor", help="pre-flight: Python, packages, ports, memory, the backend, one request",
                        description="Check this machine for the labs, one verdict per line (✓ ⚠ ✗).")
    dr.add_argument("--no-request", action="store_true", help="skip sending one request through a mesh")
    dr.set_defaults(func=cmd_doctor)
