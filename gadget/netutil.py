"""Network exposure helpers shared by the servers (`serve`, `gadgetron-listen`)."""

from __future__ import annotations

import ipaddress
import socket
import sys

EXPOSURE_WARNING = ("warning: {what} is binding {host}, which is reachable from other machines; it has no "
                    "authentication and raw data may hold patient information — bind 127.0.0.1 (the default) "
                    "unless this host sits on a closed scanner network")


def is_loopback(host: str) -> bool:
    """True for loopback addresses and 'localhost' (a name that resolves only to loopback)."""
    h = (host or "").strip().strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(h, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def warn_if_exposed(host: str, what: str, stream=None) -> bool:
    """Print the exposure warning for a non-loopback bind address; returns True if it warned."""
    if is_loopback(host):
        return False
    print(EXPOSURE_WARNING.format(what=what, host=host or "all interfaces"), file=stream or sys.stderr, flush=True)
    return True


def listen_once(host: str, port: int, timeout: float | None = None) -> socket.socket:
    """Bind `host:port`, accept one connection, close the listener; returns the connected socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, int(port)))
        srv.listen(1)
        srv.settimeout(timeout)
        conn, _ = srv.accept()
        conn.settimeout(None)
        return conn
    finally:
        srv.close()
