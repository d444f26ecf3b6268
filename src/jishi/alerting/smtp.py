"""E-mail notifier: each notification as one plain-text message over SMTP (stdlib smtplib, in a thread).

Subject and body come from `jishi.alerting.notify.subject` / `text`; an `X-Jishi-Status: firing|resolved`
header lets mail filters sort them. STARTTLS, implicit TLS and login are optional.
A failure raises `NotificationError` naming the server and what it said.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl as ssl_lib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from jishi.alerting.notify import subject, text
from jishi.core.alerts import Notification
from jishi.errors import NotificationError

__all__ = ["SmtpNotifier"]


class SmtpNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        to: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not to:
            raise ValueError("an e-mail notifier needs at least one recipient")
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self._login = (username, password) if username is not None else None
        self._starttls, self._ssl, self._timeout = starttls, ssl, timeout

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject(notification)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(notification.at, localtime=False)
        msg["Message-ID"] = make_msgid(domain="jishi")
        msg["X-Jishi-Status"] = notification.status
        msg.set_content(text(notification))
        return msg

    async def send(self, notification: Notification) -> None:
        msg = self.message(notification)
        try:
            await asyncio.to_thread(self._deliver, msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationError(
                f"e-mail via {self.host}:{self.port} to {', '.join(self.to)}: not delivered "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def _deliver(self, msg: EmailMessage) -> None:
        context = ssl_lib.create_default_context()
        if self._ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self._timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self._timeout)
        with smtp:
            if self._starttls:
                smtp.starttls(context=context)
            if self._login is not None:
                smtp.login(self._login[0], self._login[1] or "")
            smtp.send_message(msg, from_addr=self.sender, to_addrs=self.to)
