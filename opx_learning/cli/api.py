"""`opx-learning api`: serve the REST API (docs/rest-api.md) with uvicorn."""

from __future__ import annotations

import errno
import json
import socket
import sys

import click

from opx_learning.backends import guard_for
from opx_learning.cli.environment import command_settings


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be served (in use, not allowed, unknown host), or None when it is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return f"--host: {host!r} cannot be resolved ({error.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (f"--port: {port} on {host} is already in use (another `opx-learning api`?); "
                        "stop that process or pass another --port")
            if error.errno == errno.EACCES:
                return f"--port: {port} on {host} needs privileges; use a port above 1023"
            return f"--host/--port: cannot listen on {host}:{port} ({error.strerror})"
    return None


@click.command(help="Serve the REST API (runbook paths: /learning/extract-patterns, /learning/calibrate, "
               "/learning/create-snapshot, /learning/kill-switch/{status,disable,enable}, /learning/audit/ID) "
               "with OpenAPI at /openapi.json and /docs. Callers authenticate with `Authorization: Bearer <token>` "
               "(token_sha256 in OPX_PRINCIPALS), or behind a gateway with OPX_TRUSTED_IDENTITY_HEADER.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="TCP port.")
@click.option("--reload", is_flag=True, help="Restart on code changes (development only).")
@click.option("--json", "as_json", is_flag=True, help="Print the startup summary as JSON.")
def api(host: str, port: int, reload: bool, as_json: bool) -> None:
    """Check the port and the principals file, print where the API listens, then run uvicorn until stopped."""
    import uvicorn

    from opx_learning.safety.principals import PrincipalsFileError, principals_for

    problem = port_problem(host, port)
    if problem:
        raise click.UsageError(problem)
    settings = command_settings()
    try:
        principals = principals_for(settings)
    except PrincipalsFileError as error:
        raise click.ClickException(str(error)) from None
    # Fail at startup, not per request, on a malformed OPX_RATE_LIMITS / OPX_MAINTENANCE_WINDOWS.
    guard_for(settings)
    trusted = settings.trusted_identity_header
    url = f"http://{host}:{port}"
    info = {
        "url": url,
        "docs": f"{url}/docs",
        "openapi": f"{url}/openapi.json",
        "backend": settings.backend,
        "opx_home": str(settings.home),
        "principals_file": str(settings.principals_file) if settings.principals_file else None,
        "token_principals": len(principals.token_hashes),
        "trusted_identity_header": trusted,
    }
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"opx-learning API on {url} (docs {url}/docs), backend {settings.backend}, OPX_HOME {settings.home}")
        if trusted:
            click.echo(f"trusting the {trusted} header for identity: only safe behind a gateway that sets it and "
                       "strips it from clients")
    if not principals.token_hashes and not trusted:
        click.echo("warning: no principal in OPX_PRINCIPALS has a token_sha256, so every authenticated endpoint "
                   "answers 401", err=True)
    uvicorn.run("opx_learning.api.app:create_app", factory=True, host=host, port=port, reload=reload,
                log_level="info")


if __name__ == "__main__":
    from opx_learning.cli.main import main

    main(["api", *sys.argv[1:]])
