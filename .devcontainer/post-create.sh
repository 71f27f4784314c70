#!/bin/bash
# The lab's virtual environment, and kind for `meshkit up --backend kind` (Docker comes from the
# docker-in-docker feature, kubectl and helm from theirs; meshkit installs Istio with helm when
# istioctl is not on PATH).
set -euo pipefail
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 make .venv/.installed
if ! command -v kind >/dev/null; then
  arch=$(dpkg --print-architecture)
  curl -fsSLo /tmp/kind "https://kind.sigs.k8s.io/dl/v0.32.0/kind-linux-${arch}"
  sudo install -m 0755 /tmp/kind /usr/local/bin/kind
fi
.venv/bin/meshkit doctor --no-request || true
