"""Outgoing email: plain-text messages through SMTP, or into files during development.

    SMTP         when TESSERA_SMTP_HOST is set (STARTTLS by default, implicit TLS on port 465,
                 LOGIN when a username is configured)
    development  otherwise: each message becomes `<data_dir>/mail/<time>-<id>.eml` and one log line

Only `workers.email` calls `send`: requests queue mail and never wait for a mail server. The
backend is chosen per message from the settings, so a changed setting applies at once.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

from tessera.core.settings import Settings, get_settings

log = logging.getLogger("tessera.mailer")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


def compose(mail: Mail, settings: Settings) -> EmailMessage:
    """The RFC 5322 message. `EmailMessage` refuses line breaks in headers (no header injection)."""
    sender_domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "localhost"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    # An explicit domain: make_msgid() would otherwise resolve this host's FQDN on every message.
    message["Message-ID"] = make_msgid(domain=sender_domain)
    message.set_content(mail.body)
    return message


def _send_smtp(message: EmailMessage, settings: Settings) -> None:
    context = ssl.create_default_context()
    host, port, timeout = settings.smtp_host or "", settings.smtp_port, settings.smtp_timeout_s
    if port == 465:
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if settings.smtp_starttls and port != 465:
            client.starttls(context=context)
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password or "")
        client.send_message(message)


def _write_file(message: EmailMessage, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}.eml"
    partial = directory / f".{name}.part"
    partial.write_bytes(message.as_bytes())
    # Renamed into place whole, so a reader watching the directory never sees half a message.
    return partial.replace(directory / name)


async def send(mail: Mail) -> None:
    """Deliver one message; raises on failure so the calling job is retried."""
    settings = get_settings()
    message = compose(mail, settings)
    if settings.smtp_host:
        # smtplib blocks; a worker thread keeps the event loop (and other jobs) running.
        await asyncio.to_thread(_send_smtp, message, settings)
        log.info("mail sent via SMTP", extra={"subject": mail.subject})
        return
    path = await asyncio.to_thread(_write_file, message, settings.data_dir / "mail")
    if settings.is_production:
        log.warning("TESSERA_SMTP_HOST is not set: mail was written to %s, not sent", path)
    else:
        log.info("development mail backend wrote %s (%s)", path, mail.subject)
