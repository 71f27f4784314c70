"""Each proxy's own random numbers: fresh entropy in real runs, reproducible when a seed is set.

A proxy draws for its load balancer, weighted routes, mirroring, retry back-off and trace sampling
(one stream), and for fault injection (a stream of its own, so how many faults a test sees does not
depend on how many other draws happened in between). ``MESHKIT_SEED`` in the environment of
``meshkit up`` (the test suite sets it) seeds both streams from the seed and the proxy's stable
name (its workload and replica number, not the pod's random suffix), so a statistical test sees the
same draws on every run; without it every stream starts from the operating system's entropy, as
Envoy's does.

Example::

    rng = proxy_rng("recommendation-v1#0", "fault")     # random.Random
    rng.randrange(1_000_000)
"""

from __future__ import annotations

import os
import random

SEED_ENV = "MESHKIT_SEED"


def proxy_rng(name: str, stream: str = "main") -> random.Random:
    """A new generator for the proxy ``name``'s ``stream``, seeded from ``MESHKIT_SEED`` when set.

    A string seed is hashed with SHA-512 by :class:`random.Random`, so the same seed, name and
    stream give the same draws in every process and on every run (no dependence on hash
    randomisation).
    """
    seed = os.environ.get(SEED_ENV, "").strip()
    if not seed:
        return random.Random()
    return random.Random(f"{seed}/{name}/{stream}")


__all__ = ["SEED_ENV", "proxy_rng"]
