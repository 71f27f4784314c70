"""``istioctl waypoint`` and ``kubectl label`` on a real cluster: the argument lists the kind and kube
backends run (the real tools print the real lines and tables).

Example::

    waypoint_args("apply", "tutorial", name="waypoint", for_="service", enroll_namespace=True)
    # ['waypoint', 'apply', '-n', 'tutorial', '--name', 'waypoint', '--for', 'service',
    #  '--enroll-namespace', '--wait']
"""

from __future__ import annotations

from collections.abc import Mapping

KUBECTL_KINDS = {"Namespace": "namespace", "Service": "service", "Pod": "pod"}


def waypoint_args(action: str, namespace: str, name: str = "waypoint", for_: str | None = None,
                  enroll_namespace: bool = False, overwrite: bool = False, wait: bool = True,
                  all_namespaces: bool = False) -> list[str]:
    """istioctl's arguments (after ``istioctl --context C``) for ``waypoint apply|list|status|delete``."""
    args = ["waypoint", action, "-n", namespace]
    if action == "apply":
        args += ["--name", name]
        if for_:
            args += ["--for", for_]
        if enroll_namespace:
            args.append("--enroll-namespace")
        if overwrite:
            args.append("--overwrite")
        if wait:
            args.append("--wait")
    elif action == "delete":
        args.append(name)
    elif action in ("list", "status") and all_namespaces:
        args.append("-A")
    return args


def label_args(context: str, namespace: str, kind: str, name: str, labels: Mapping[str, str | None]) -> list[str]:
    """``kubectl label KIND NAME k=v k- --overwrite`` (a Namespace is not namespaced)."""
    argv = ["kubectl", "--context", context]
    if kind != "Namespace":
        argv += ["-n", namespace]
    argv += ["label", KUBECTL_KINDS[kind], name]
    argv += [f"{k}-" if v is None else f"{k}={v}" for k, v in labels.items()]
    return [*argv, "--overwrite"]
