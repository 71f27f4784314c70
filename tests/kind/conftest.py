"""Fixtures for the kind backend's tests: a fake Kubernetes API server on 127.0.0.1 and a client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from meshkit.backends.kind.apierrors import Where
from meshkit.backends.kind.client import KubeClient
from tests.kind.fakeapi import FakeApiServer


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kc(api: FakeApiServer) -> Iterator[KubeClient]:
    client = KubeClient(k8s.ApiClient(k8s.Configuration(host=api.url)), Where("kind-meshkit", "tutorial", api.url))
    yield client
    client.close()
