"""Receivers for alerts on 127.0.0.1: an HTTP sink (generic JSON and Slack webhooks) and an SMTP sink.

Both record what arrives, so a test reads exactly the alerts a run sent; ``receivers`` sets
the three alert connections (``AIRFLOW_CONN_*``) to point at them, each with a secret
that must never appear in an alert.
"""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# the receivers' credentials: none of them may appear in a received alert
SLACK_TOKEN = "T0ALERTS/B0ALERTS/slacksecrettoken123"
WEBHOOK_PASSWORD = "webhooksecretpass456"
SMTP_PASSWORD = "smtpsecretpass789"
SECRETS = (SLACK_TOKEN, WEBHOOK_PASSWORD, SMTP_PASSWORD)


@dataclass
class HttpSink:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps ``(path, body)``."""

    server: ThreadingHTTPServer
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path_prefix: str) -> list[dict[str, Any]]:
        """The JSON bodies POSTed to paths starting with ``path_prefix``, in arrival order."""
        return [body for path, body in list(self.received) if path.startswith(path_prefix)]


@contextmanager
def http_sink():
    """Yields a running :class:`HttpSink`; stops it on exit."""
    received: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                received.append((self.path, json.loads(body)))
            except ValueError:
                received.append((self.path, {"raw": body.decode(errors="replace")}))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpSink(server, received)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpSink:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that accepts login ``alerts``/:data:`SMTP_PASSWORD`."""

    port: int
    messages: list[Any] = field(default_factory=list)

    def mails(self) -> list[dict[str, str]]:
        """Each received mail as ``{"to", "subject", "body"}`` (body: the decoded text of every part)."""
        found = []
        for raw in list(self.messages):
            mail = message_from_bytes(raw, policy=default_policy)
            parts = [part.get_content() for part in mail.walk() if part.get_content_maintype() == "text"]
            found.append({"to": str(mail["To"]), "subject": str(mail["Subject"]), "body": "\n".join(parts)})
        return found


@contextmanager
def smtp_sink():
    """Yields a running :class:`SmtpSink`; stops it on exit."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    messages: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - the aiosmtpd API
            messages.append(envelope.original_content or envelope.content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = getattr(auth_data, "login", b"") == b"alerts" and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    try:
        yield SmtpSink(port, messages)
    finally:
        controller.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (closed: a connection to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connections(http_url: str, smtp_port: int) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables for the three alert receivers at ``http_url`` and ``smtp_port``."""
    host_port = http_url.removeprefix("http://")
    return {
        "AIRFLOW_CONN_ALERTS_WEBHOOK": json.dumps(
            {
                "conn_type": "apprise",
                "extra": {"config": {"path": f"json://alerts:{WEBHOOK_PASSWORD}@{host_port}/generic", "tag": "alerts"}},
            }
        ),
        "AIRFLOW_CONN_ALERTS_SLACK": json.dumps(
            {"conn_type": "slackwebhook", "host": f"{http_url}/slack", "password": SLACK_TOKEN}
        ),
        "AIRFLOW_CONN_ALERTS_EMAIL": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "login": "alerts",
                "password": SMTP_PASSWORD,
                "extra": {
                    "to": "ml-oncall@example.com",
                    "from_email": "airflow@example.com",
                    "disable_tls": True,
                    "disable_ssl": True,
                    "timeout": 5,
                    "retry_limit": 0,
                },
            }
        ),
    }


@dataclass
class Received:
    """What the three receivers got, per alert kind."""

    http: HttpSink
    smtp: SmtpSink

    def generic(self) -> list[dict[str, Any]]:
        return self.http.bodies("/generic")

    def slack(self) -> list[dict[str, Any]]:
        return self.http.bodies("/slack")

    def titles(self) -> dict[str, list[str]]:
        """The title of each alert per receiver: ``{"generic": [...], "slack": [...], "email": [...]}``."""
        return {
            "generic": [body["title"] for body in self.generic()],
            "slack": [body["text"].splitlines()[0] for body in self.slack()],
            "email": [mail["subject"] for mail in self.smtp.mails()],
        }

    def everything(self) -> str:
        """Every received alert as one text, to search for what must never be there."""
        return json.dumps(self.generic()) + json.dumps(self.slack()) + json.dumps(self.smtp.mails())
