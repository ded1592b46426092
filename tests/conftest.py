"""Shared fixtures: tenants acme and globex; alice (owner), bob (viewer), charlie (outsider).

acme: alice owner, adam admin, oscar operator, bob viewer. globex: charlie owner.
``api`` returns a DRF client authenticated as a user through a real API token.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from rest_framework.test import APIClient

from controlplane.tenancy.choices import Role
from tests.factories import TenantFactory, UserFactory, add_member, make_token


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """Give each pytest run its own test databases, so two runs on one server never collide."""
    from django.conf import settings

    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:8]
    for db in settings.DATABASES.values():
        if db["ENGINE"].endswith("sqlite3"):
            continue
        name = db.get("TEST", {}).get("NAME") or f"test_{db['NAME']}"
        db.setdefault("TEST", {})["NAME"] = f"{name}_{run_id}"


@pytest.fixture(scope="session", autouse=True)
def _own_channel_prefix():
    """Give each pytest run (and xdist worker) its own channel-layer prefix on the shared Redis.

    Test databases of two runs number their tenants and runs alike, so their websocket groups
    would share names. Servers and workers started by the tests inherit it (CHANNEL_PREFIX).
    """
    from channels.layers import channel_layers
    from django.conf import settings

    config = settings.CHANNEL_LAYERS["default"].get("CONFIG")
    if config is None or "prefix" not in config:
        yield
        return
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:8]
    prefix = f"cp-test-{run_id}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    previous = os.environ.get("CHANNEL_PREFIX")
    os.environ["CHANNEL_PREFIX"] = config["prefix"] = prefix
    channel_layers.backends.clear()
    yield
    config["prefix"] = previous or "cp"
    if previous is None:
        os.environ.pop("CHANNEL_PREFIX", None)
    else:
        os.environ["CHANNEL_PREFIX"] = previous
    channel_layers.backends.clear()


@dataclasses.dataclass
class World:
    acme: object
    globex: object
    alice: object  # acme owner
    adam: object  # acme admin
    oscar: object  # acme operator
    bob: object  # acme viewer
    charlie: object  # globex owner, outsider to acme

    def user_with_role(self, role: str):
        return {
            Role.OWNER: self.alice,
            Role.ADMIN: self.adam,
            Role.OPERATOR: self.oscar,
            Role.VIEWER: self.bob,
        }[role]


@pytest.fixture
def world(db) -> World:
    acme = TenantFactory(slug="acme", name="Acme Corp")
    globex = TenantFactory(slug="globex", name="Globex")
    w = World(
        acme=acme,
        globex=globex,
        alice=UserFactory(username="alice"),
        adam=UserFactory(username="adam"),
        oscar=UserFactory(username="oscar"),
        bob=UserFactory(username="bob"),
        charlie=UserFactory(username="charlie"),
    )
    add_member(acme, w.alice, Role.OWNER)
    add_member(acme, w.adam, Role.ADMIN)
    add_member(acme, w.oscar, Role.OPERATOR)
    add_member(acme, w.bob, Role.VIEWER)
    add_member(globex, w.charlie, Role.OWNER)
    return w


@pytest.fixture
def api():
    """``api(user, tenant, scope=None)``: a client sending a fresh Bearer token.

    ``scope`` defaults to the widest the user's role can use (see ``make_token``).
    """

    def make(user=None, tenant=None, scope: str | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            token = make_token(tenant, user, scope=scope)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness protects real passwords, not fixtures.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
