"""Kubernetes client failures -> meshkit's exceptions, each one paragraph that says the fix.

The kubernetes client raises ``ApiException`` (with a ``Status`` JSON body) for HTTP errors and
urllib3 errors when the API server cannot be reached; learners should see neither.

Example::

    try:
        vs.server_side_apply(body=doc, field_manager="meshkit", force_conflicts=True)
    except Exception as exc:
        raise translate(exc, doing="apply virtualservice/recommendation", where=where) from None
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meshkit.errors import BackendUnavailable, InvalidConfig, MeshkitError, NotFound


@dataclass(frozen=True)
class Where:
    """Which cluster and namespace a request went to, for the messages."""

    context: str
    namespace: str
    host: str = ""


def status_of(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, Kubernetes reason, message) of an ApiException-like error; (0, "", str) otherwise."""
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        return 0, "", str(exc)
    body: Any = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    reason, message = str(getattr(exc, "reason", "") or ""), ""
    if isinstance(body, str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            message = body.strip()
        else:
            if isinstance(parsed, dict):
                message = str(parsed.get("message", "")) or body
                reason = str(parsed.get("reason", reason) or reason)
    return status, reason, message or reason or f"HTTP {status}"


def _rbac_fix(where: Where) -> str:
    ns = where.namespace
    return (
        f"Ask the cluster admin to grant your user the 'edit' role in namespace {ns} (for example: "
        f"kubectl create rolebinding meshkit-edit --clusterrole=edit --user=<you> -n {ns}; Istio's "
        "istiod ClusterRoles aggregate its resources into 'edit'), then check with: "
        f"kubectl --context {where.context} auth can-i patch virtualservices.networking.istio.io -n {ns}"
    )


def translate(exc: BaseException, *, doing: str, where: Where) -> MeshkitError:
    """The meshkit error for ``exc`` raised while ``doing`` (e.g. "apply virtualservice/reviews")."""
    if isinstance(exc, MeshkitError):
        return exc
    status, reason, message = status_of(exc)
    ctx = f"context {where.context}"
    if status == 0:
        host = f" at {where.host}" if where.host else ""
        return BackendUnavailable(
            f"cannot reach the Kubernetes API server of {ctx}{host} while trying to {doing} ({message}). "
            "Is the cluster running? For the kind backend check `docker ps` for the meshkit-control-plane "
            "container and start it with: meshkit up --backend kind; for an existing cluster check "
            f"`kubectl --context {where.context} cluster-info`."
        )
    if status == 401:
        return BackendUnavailable(
            f"the API server of {ctx} rejected your credentials while trying to {doing} ({message}). "
            "Log in again or refresh the kubeconfig (for kind: kind export kubeconfig --name <cluster>)."
        )
    if status == 403:
        return MeshkitError(
            f"forbidden: cannot {doing} in namespace {where.namespace} ({message}). " + _rbac_fix(where)
        )
    if status == 404:
        if "namespaces" in message and "not found" in message:
            return NotFound(
                f"namespace {where.namespace} does not exist in {ctx} ({message}). Create it with: "
                f"kubectl --context {where.context} create namespace {where.namespace} && kubectl --context "
                f"{where.context} label namespace {where.namespace} istio-injection=enabled"
            )
        return NotFound(
            f"cannot {doing}: not found in namespace {where.namespace} of {ctx} ({message}). "
            "List what exists with: meshkit get"
        )
    if status == 409:
        return MeshkitError(
            f"conflict while trying to {doing} ({message}). Another client changed the object at the "
            "same moment or owns these fields; run the command again."
        )
    if "failed calling webhook" in message:
        return BackendUnavailable(
            f"Istio's validation webhook is not answering yet, so the API server refused to {doing} "
            f"({message}). istiod is probably still starting: wait a minute and retry, and check with "
            f"kubectl --context {where.context} -n istio-system get pods"
        )
    if status in (400, 422) or reason == "Invalid" or "denied the request" in message:
        return InvalidConfig([f"{doing}: {message}"])
    if status >= 500:
        return BackendUnavailable(
            f"the API server of {ctx} failed to {doing} (HTTP {status} {reason}: {message}). It may be "
            "overloaded or restarting; wait a little and retry. On kind, give Docker at least 8 GB and "
            "4 CPUs."
        )
    return MeshkitError(f"cannot {doing}: HTTP {status} {reason}: {message}")
