"""What the control plane's API accepts: types, ranges and names, each refusal a located message."""

from __future__ import annotations

import doctest

import pytest

from meshkit.backends.local import apiinput
from meshkit.backends.local.apiinput import BadInput


@pytest.mark.parametrize("name", ["v1", "v2-canary", "a", "x" * 63, "0abc"])
def test_dns_labels_accepted(name: str) -> None:
    assert apiinput.dns_label(name, "version") == name


@pytest.mark.parametrize(
    "name",
    ["", "V1", "-v1", "v1-", "../../etc", "a/b", "a.b", "x" * 64, "v1\n", "v 1", "é", None, 1, ["v1"]],
)
def test_dns_labels_refused_with_the_field_named(name: object) -> None:
    with pytest.raises(BadInput, match=r"^version: Invalid value"):
        apiinput.dns_label(name, "version")


def test_subdomains_allow_dots_but_no_path() -> None:
    assert apiinput.dns_subdomain("customer-credential.example", "name") == "customer-credential.example"
    for bad in ("../x", "/abs", "a..b", ".a", "a" * 254):
        with pytest.raises(BadInput, match=r"^name: "):
            apiinput.dns_subdomain(bad, "name")


@pytest.mark.parametrize("value", [0, 1, 50])
def test_replicas_in_range(value: int) -> None:
    assert apiinput.integer(value, "replicas", 0, apiinput.MAX_REPLICAS) == value


@pytest.mark.parametrize("value", [-1, 51, 10**5000, True, 1.0, "2", None],
                         ids=["-1", "51", "5000-digits", "true", "float", "string", "null"])
def test_replicas_out_of_range_or_wrong_type(value: object) -> None:
    with pytest.raises(BadInput, match=r"^replicas: Invalid value"):
        apiinput.integer(value, "replicas", 0, apiinput.MAX_REPLICAS)


def test_numbers_must_be_finite_and_in_range() -> None:
    assert apiinput.number(3600, "ttl", 1, 10**6) == 3600.0
    for bad in (float("nan"), float("inf"), 0, True, "60"):
        with pytest.raises(BadInput, match=r"^ttl: "):
            apiinput.number(bad, "ttl", 1, 10**6)


def test_query_values() -> None:
    q = {"limit": "20", "since": "1.5", "bad": "1e999", "long": "9" * 5000, "neg": "-3"}
    assert apiinput.query_int(q, "limit", 5, 0, 100) == 20
    assert apiinput.query_int(q, "absent", 5, 0, 100) == 5
    assert apiinput.query_number(q, "since", 0, 0, 10) == 1.5
    for field in ("bad", "long", "neg"):
        with pytest.raises(BadInput, match=rf"^{field}: Invalid value"):
            apiinput.query_int(q, field, 0, 0, 100)
    with pytest.raises(BadInput, match=r"^bad: "):
        apiinput.query_number(q, "bad", 0, 0, 10)


def test_body_must_be_one_json_object() -> None:
    assert apiinput.json_object(b"") == {}
    assert apiinput.json_object(b'{"a": 1}') == {"a": 1}
    for bad in (b"[1]", b"nope", b'"x"', b"\xff\xfe", b"[" * 5000):
        with pytest.raises(BadInput, match=r"^the request body"):
            apiinput.json_object(bad)


def test_module_examples_run() -> None:
    result = doctest.testmod(apiinput, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
