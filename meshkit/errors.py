"""meshkit's exception tree. Backends translate their own failures into these at the boundary.

Every error carries a message a learner can act on; the CLI prints ``str(error)`` and exits non-zero,
never a traceback.
"""

from __future__ import annotations


class MeshkitError(Exception):
    """Base of every error meshkit raises on purpose."""

    exit_code = 1


class MeshNotRunning(MeshkitError):
    """No mesh is running for this MESHKIT_HOME (or cluster context)."""

    def __init__(self, home: str = "", message: str = "") -> None:
        where = f" (MESHKIT_HOME={home})" if home else ""
        super().__init__(message or f"no mesh is running{where}; start one with: meshkit up")


class InvalidConfig(MeshkitError):
    """One or more resources were rejected; ``problems`` holds one located message each.

    Nothing was applied when this is raised (apply is all-or-nothing).
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class NotFound(MeshkitError):
    """A named object (resource, pod, deployment, service) does not exist."""


class BackendUnavailable(MeshkitError):
    """A backend's prerequisites are missing (a tool, a library, Docker, a cluster)."""

    exit_code = 3


class Unsupported(MeshkitError):
    """The backend does not offer this capability."""
