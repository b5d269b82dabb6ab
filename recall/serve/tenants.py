"""Who may read and write which namespaces: API keys mapped to namespaces, from a key file or an
environment variable. With no key configured the server is open (any caller, every namespace) and binds
to loopback only."""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from memory_store import StoreError, validate_namespace
from recall.errors import ConfigError

KEYS_ENV = "RECALL_API_KEYS"  # "KEY=ns1,ns2;KEY2=ns3"
MIN_KEY_CHARS = 16  # a shorter key can be guessed


class AccessError(Exception):
    """A request without a valid key (401), or for a namespace its key does not hold (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Tenant:
    """One API key's rights: `namespaces` it reads and writes (the first is its default); None: all."""

    label: str  # what logs and metrics name (never the key itself)
    namespaces: tuple[str, ...] | None

    @property
    def default_namespace(self) -> str:
        return self.namespaces[0] if self.namespaces else "default"

    def namespace(self, asked: str | None) -> str:
        """The namespace a request works in: the one it asked for, if this tenant holds it."""
        if asked is None:
            return self.default_namespace
        if self.namespaces is not None and asked not in self.namespaces:
            raise AccessError(403, f"this API key may not use namespace {asked!r}")
        return asked


OPEN = Tenant("open", None)


def tenant_of(state: object) -> Tenant:
    """The Tenant the key middleware (recall/serve/app.py) put on a request's state."""
    tenant = getattr(state, "tenant", None)
    if not isinstance(tenant, Tenant):
        raise AccessError(401, "missing API key: send the header 'Authorization: Bearer KEY'")
    return tenant


class Tenants:
    """The key table. `resolve` maps an Authorization header to its Tenant (constant-time compare)."""

    def __init__(self, keys: dict[str, tuple[str, ...]]) -> None:
        for key, namespaces in keys.items():
            if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
                raise ConfigError(f"API key {key[:4]}... expected {MIN_KEY_CHARS}+ characters and no spaces")
            if not namespaces:
                raise ConfigError(f"API key {key[:4]}... names no namespace")
            for name in namespaces:
                try:
                    validate_namespace(name)
                except StoreError as exc:
                    raise ConfigError(f"API key {key[:4]}...: {exc}") from None
        self._keys = {key: Tenant(f"key-{i}", ns) for i, (key, ns) in enumerate(keys.items(), start=1)}

    @property
    def open(self) -> bool:
        return not self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def resolve(self, authorization: str | None) -> Tenant:
        if self.open:
            return OPEN
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise AccessError(401, "missing API key: send the header 'Authorization: Bearer KEY'")
        for known, tenant in self._keys.items():
            if hmac.compare_digest(known.encode(), key.strip().encode()):
                return tenant
        raise AccessError(401, "unknown API key")

    @classmethod
    def load(cls, path: Path | None = None, env: str | None = None) -> Tenants:
        """Keys from `path` (YAML or JSON: {keys: {KEY: [namespace, ...]}}), else from `env` (default
        $RECALL_API_KEYS: "KEY=ns1,ns2;KEY2=ns3"), else none."""
        if path is not None:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read the key file {path}: {exc}") from None
            table = data.get("keys") if isinstance(data, dict) else None
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
                for k, v in table.items()
            ):
                example = json.dumps({"keys": {"KEY": ["namespace"]}})
                raise ConfigError(f"{path}: expected a mapping like {example}")
            return cls({k: tuple(v) for k, v in table.items()})
        text = os.environ.get(KEYS_ENV, "") if env is None else env
        keys: dict[str, tuple[str, ...]] = {}
        for entry in filter(None, (e.strip() for e in text.split(";"))):
            key, sep, names = entry.partition("=")
            if not sep:
                raise ConfigError(f"${KEYS_ENV} expected KEY=ns1,ns2 entries separated by ';'")
            keys[key.strip()] = tuple(n.strip() for n in names.split(",") if n.strip())
        return cls(keys)
