"""Gateway and ServiceEntry validation."""

from __future__ import annotations

from tests.resources.helpers import doc, errors


def gw(*servers: dict[str, object]) -> str:
    return doc("Gateway", {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}, name="customer-gateway")


def server(protocol: str = "HTTP", number: int = 80, **extra: object) -> dict[str, object]:
    return {"port": {"number": number, "name": protocol.lower(), "protocol": protocol}, "hosts": ["*"], **extra}


def test_gateway_ok() -> None:
    assert errors(gw(server())) == []
    tls = {"mode": "SIMPLE", "credentialName": "customer-cert", "minProtocolVersion": "TLSV1_2"}
    assert errors(gw(server("HTTPS", 443, tls=tls))) == []


def test_gateway_port_and_protocol() -> None:
    assert errors(gw(server(number=0))) == [
        ("spec.servers[0].port.number", "port number 0 must be in the range 1..65535")
    ]
    assert errors(gw(server("SMTP"))) == [
        (
            "spec.servers[0].port.protocol",
            'invalid protocol "SMTP", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP',
        )
    ]


def test_gateway_hosts_required() -> None:
    assert errors(gw({"port": {"number": 80, "protocol": "HTTP", "name": "http"}, "hosts": []})) == [
        ("spec.servers[0].hosts", "server config must contain at least one host")
    ]


def test_https_needs_tls_and_http_cannot_have_it() -> None:
    assert errors(gw(server("HTTPS", 443))) == [
        ("spec.servers[0].tls", "server must have TLS settings for HTTPS/TLS protocols")
    ]
    assert errors(gw(server("HTTP", tls={"mode": "SIMPLE", "credentialName": "x"}))) == [
        ("spec.servers[0].tls", "server cannot have TLS settings for plain text HTTP ports")
    ]
    assert errors(gw(server("HTTP", tls={"httpsRedirect": True}))) == []


def test_gateway_tls_modes() -> None:
    assert errors(gw(server("HTTPS", 443, tls={"mode": "MUTUAL"}))) == [
        ("spec.servers[0].tls.caCertificates", "MUTUAL TLS requires a client CA bundle"),
        ("spec.servers[0].tls.serverCertificate", "MUTUAL TLS requires a server certificate"),
        ("spec.servers[0].tls.privateKey", "MUTUAL TLS requires a private key"),
    ]
    assert errors(gw(server("HTTPS", 443, tls={"mode": "OPTIONAL"})))[0][1].startswith('unsupported value "OPTIONAL"')


def se(**spec: object) -> str:
    return doc("ServiceEntry", spec, name="worldtimeapi")


def test_service_entry_ok() -> None:
    spec = {
        "hosts": ["worldtimeapi.org", "*.example.com"],
        "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
        "location": "MESH_EXTERNAL",
        "resolution": "NONE",
        "addresses": ["10.0.0.0/24"],
        "exportTo": ["*"],
    }
    assert errors(se(**spec)) == []


def test_service_entry_needs_a_host() -> None:
    assert errors(se(hosts=[])) == [("spec.hosts", "service entry must have at least one host")]
    assert errors(se(ports=[{"number": 80, "name": "http"}])) == [
        ("spec.hosts", "service entry must have at least one host")
    ]


def test_service_entry_enums_and_endpoints() -> None:
    assert errors(se(hosts=["a.org"], resolution="MAGIC"))[0][0] == "spec.resolution"
    assert errors(se(hosts=["a.org"], location="OUTSIDE"))[0][0] == "spec.location"
    assert errors(se(hosts=["a.org"], resolution="NONE", endpoints=[{"address": "1.2.3.4"}])) == [
        ("spec.endpoints", "no endpoints should be provided for resolution type none")
    ]
    assert (
        errors(
            se(
                hosts=["a.org"],
                resolution="STATIC",
                ports=[{"number": 80, "name": "http"}],
                endpoints=[{"address": "1.2.3.4", "ports": {"http": 80}, "labels": {"app": "x"}}],
            )
        )
        == []
    )
    assert errors(se(hosts=["a.org"], addresses=["not-an-ip"])) == [
        ("spec.addresses[0]", "not-an-ip is not a valid IP")
    ]
