"""The examples in the modules' docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import meshkit.resources

# the package front door shows a multi-step session in prose; every module below it has runnable examples
MODULES = sorted(m.name for m in pkgutil.iter_modules(meshkit.resources.__path__, "meshkit.resources."))


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
