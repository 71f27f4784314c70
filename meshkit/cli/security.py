"""Verbs for identity and security: certs, sniff, secret tls, token."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from meshkit.cli.common import _mesh, _print, _table
from meshkit.errors import MeshkitError


def cmd_certs(args: argparse.Namespace) -> int:
    secrets = _mesh(args).certs(args.pod)
    if args.output == "json":
        _print(json.dumps(secrets, indent=2))
        return 0
    rows = [("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE")]
    for name, s in secrets.items():
        rows.append((name, str(s.get("type", "")), str(s.get("status", "")), str(s.get("valid_cert", "")),
                     str(s.get("serial_number", "")), str(s.get("not_after", "")), str(s.get("not_before", ""))))
    _table(rows)
    default = secrets.get("default", {})
    _print(f"\nidentity: {default.get('spiffe_id', '-')}   issuer: {default.get('issuer', '-')}")
    return 0


def cmd_sniff(args: argparse.Namespace) -> int:
    from meshkit.backends.local.sniff import render

    views = _mesh(args).sniff(args.target, args.requests, args.seconds)
    _print(json.dumps(views, indent=2) if args.output == "json" else render(views))
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    if args.self_signed:
        from meshkit.backends.local.tls import make_self_signed

        cert, key = make_self_signed(args.self_signed)
        out = Path(f"{args.name}.crt")
        out.write_text(cert)
        _print(f"self-signed certificate for {', '.join(args.self_signed)} written to {out} (trust it with --cacert)")
    elif args.cert and args.key:
        cert, key = Path(args.cert).read_text(), Path(args.key).read_text()
    else:
        raise MeshkitError("secret tls needs --cert FILE --key FILE, or --self-signed HOST")
    _mesh(args).create_tls_secret(args.name, cert, key)
    _print(f"secret/{args.name} created")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    claims: dict[str, Any] = {}
    for item in args.claim or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MeshkitError(f'bad claim "{item}": use --claim name=value')
        claims[key] = value
    _print(_mesh(args).token(args.subject, args.ttl, **claims))
    return 0
