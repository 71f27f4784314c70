"""Print the Binder badge (Markdown) for this clone's GitHub repository: ``python binder/badge.py``.

The address comes from ``git remote get-url origin`` (or the first argument), so a fork gets a badge
that opens the fork, not the repository it was forked from.
"""

from __future__ import annotations

import re
import subprocess
import sys

LAB = "labs/00_setup.ipynb"


def github_repo(remote: str) -> str:
    """``owner/name`` of a GitHub remote (https or ssh form).

    >>> github_repo("git@github.com:alice/meshkit.git"), github_repo("https://github.com/bob/lab")
    ('alice/meshkit', 'bob/lab')
    """
    match = re.search(r"github\.com[:/]([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", remote.strip())
    if not match:
        raise ValueError(f"not a GitHub remote: {remote!r}")
    return f"{match.group(1)}/{match.group(2)}"


def badge(repo: str, branch: str = "HEAD") -> str:
    url = f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=lab/tree/{LAB}"
    return f"[![Binder](https://mybinder.org/badge_logo.svg)]({url})"


if __name__ == "__main__":
    remote = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        ["git", "remote", "get-url", "origin"], capture_output=True, text=True, check=True).stdout
    print(badge(github_repo(remote)))
