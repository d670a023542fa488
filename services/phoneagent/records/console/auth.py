"""Who may use the operator console: whoever holds the API token (``PA_API_TOKEN``).

A request is let in with ``Authorization: Bearer <token>`` or with the session cookie the login
form sets (HttpOnly, SameSite=Strict): an expiry time and an HMAC of it keyed with the token, so
the cookie is not the token, it ends, and changing the token ends every session. Tokens and
MACs are compared in constant time. Without a token configured the console (like the API) is
served on loopback only (the settings refuse any other address) and lets every request in.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

COOKIE = "pa_console"
SESSION_S = 12 * 3600


@dataclass(frozen=True)
class TokenAuth:
    token: str
    session_s: int = SESSION_S

    @property
    def open(self) -> bool:
        """No token is configured: everyone on loopback may use the console."""
        return not self.token

    def check_token(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def check_header(self, header: str) -> bool:
        """An ``Authorization`` header carrying the token as a bearer token."""
        return bool(self.token) and hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode())

    def _mac(self, expires: int) -> str:
        msg = f"phone-agent console session {expires}".encode()
        return hmac.new(self.token.encode(), msg, hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        """The value of a session cookie valid for :attr:`session_s` from ``now``."""
        expires = int(now if now is not None else time.time()) + self.session_s
        return f"{expires}.{self._mac(expires)}"

    def check_session(self, value: str, now: float | None = None) -> bool:
        if not self.token:
            return False
        expires_text, _, mac = value.partition(".")
        if not expires_text.isdigit():
            return False
        expires = int(expires_text)
        if expires <= (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(mac.encode(), self._mac(expires).encode())
