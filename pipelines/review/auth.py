"""Who may review: a user file with hashed passwords, a shared token, or a trusted proxy.

* ``--users FILE``: one ``name:scrypt$n$r$p$salt$hash`` line per registrar
  (``kinpath review add-user`` writes them; scrypt from the standard library);
* ``--token-file FILE``: one shared secret; any name with it logs in (a small team);
* ``--trust-proxy``: the hospital's reverse proxy has authenticated the user and
  says who in ``X-Remote-User`` (only behind such a proxy: anyone who can reach the
  port directly could claim any name).

A login is a signed session cookie (HMAC-SHA256; the key is random per server start
unless ``--secret-file`` keeps it) carrying the user and the session's CSRF token,
which every POST must send back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from kinpath.common import InputError

COOKIE = "kinpath_review"
SESSION_SECONDS = 12 * 3600  # a working day
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def read_users(path: Path) -> dict[str, str]:
    users = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name or not stored.startswith("scrypt$"):
            raise InputError("not a 'name:scrypt$...' line", path=path, line=i)
        users[name] = stored
    return users


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace ``name`` in the user file (created if missing, readable by its owner)."""
    if not name or ":" in name or any(c.isspace() for c in name):
        raise InputError("a user name has no colon or white space, and is not empty")
    if len(password) < 8:
        raise InputError("a password has at least 8 characters")
    users = read_users(path) if Path(path).exists() else {}
    users[name] = hash_password(password)
    path = Path(path)
    path.write_text("".join(f"{u}:{h}\n" for u, h in users.items()))
    path.chmod(0o600)


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str


@dataclass
class Auth:
    users: dict[str, str]
    token: str | None
    trust_proxy: bool
    key: bytes

    @classmethod
    def configure(
        cls,
        users: Path | None,
        token_file: Path | None,
        trust_proxy: bool,
        secret_file: Path | None,
    ) -> Auth:
        if users is None and token_file is None and not trust_proxy:
            raise InputError("say who may log in: --users FILE, --token-file FILE or --trust-proxy")
        token = None
        if token_file is not None:
            token = Path(token_file).read_text().strip()
            if len(token) < 16:
                raise InputError("the token has fewer than 16 characters", path=token_file)
        key = Path(secret_file).read_bytes() if secret_file else secrets.token_bytes(32)
        return cls(read_users(users) if users else {}, token, trust_proxy, key)

    def login(self, name: str, password: str) -> bool:
        if name in self.users and check_password(password, self.users[name]):
            return True
        return bool(self.token and name and hmac.compare_digest(password, self.token))

    def cookie(self, user: str) -> str:
        body = json.dumps(
            {"u": user, "c": secrets.token_urlsafe(24), "e": int(time.time()) + SESSION_SECONDS}
        )
        payload = base64.urlsafe_b64encode(body.encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def session(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        payload, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            d = json.loads(base64.urlsafe_b64decode(payload))
        except ValueError:
            return None
        if d.get("e", 0) < time.time():
            return None
        return Session(str(d["u"]), str(d["c"]))

    def proxy_csrf(self, user: str) -> str:
        """A user the proxy vouches for has no cookie of ours: the CSRF token is derived from
        the server's key, the user and the day."""
        return self._sign(f"csrf:{user}:{int(time.time()) // 86400}")

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()
