"""Users of `seal serve` and their API keys.

`seal serve --add-user NAME` makes a key, prints it once and keeps only its sha256 in
HOME/users/keys.json; a request's key is hashed and looked up. A key is 32 random bytes, so one
unsalted hash is enough (nobody can search a 256-bit space). Each user's memory is a seal state
folder of its own, HOME/users/NAME/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path

from agent.core.errors import SealError
from agent.core.io import read_limited, write_atomic

USERS = "users"
KEYS = "keys.json"
KEY_PREFIX = "sk-seal-"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def users_dir(home: Path) -> Path:
    return Path(home) / USERS


def user_home(home: Path, name: str) -> Path:
    check_name(name)
    return users_dir(home) / name


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise SealError(
            f"user name {name!r} is not allowed: use 1-32 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class UserRegistry:
    """The users of one server folder and their key hashes."""

    def __init__(self, home: Path):
        self.path = users_dir(home) / KEYS
        self.users: dict[str, dict] = {}
        if self.path.exists():
            try:
                data = json.loads(read_limited(self.path, 1 << 22, "user registry"))
                self.users = dict(data["users"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SealError(
                    f"{self.path} is damaged ({exc}); restore it or add the users again"
                ) from None

    def names(self) -> list[str]:
        return sorted(self.users)

    def add(self, name: str) -> str:
        """Register `name`; returns its new key (shown once, never stored)."""
        check_name(name)
        if name in self.users:
            raise SealError(f"user {name!r} exists already; pick another name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.users[name] = {"key_sha256": key_hash(key), "created_at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"users": self.users}, indent=2) + "\n")
        os.chmod(self.path, 0o600)  # hashes only, but nobody else needs to read them
        return key

    def user_of(self, key: str | None) -> str | None:
        """The user `key` belongs to, or None."""
        if not key:
            return None
        digest = key_hash(key)
        for name, row in self.users.items():
            if hmac.compare_digest(digest, str(row.get("key_sha256", ""))):
                return name
        return None
