"""The ambient data plane of the local mesh: one ztunnel for the single local node.

``hbone`` tunnels a TCP connection as an HTTP/2 CONNECT stream over mutual TLS, ``policy`` is the L4
AuthorizationPolicy that ztunnel enforces (with Istio 1.30's handling of HTTP fields), ``telemetry``
its ``istio_tcp_*`` metrics and access log, ``node`` the ztunnel process itself.
"""
