"""Management commands: create_api_token, create_user and seed_demo."""

from __future__ import annotations

import datetime as dt
import io
import json
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.api.models import ApiToken
from controlplane.api.services import hash_token
from controlplane.audit.models import AuditChain, AuditEvent
from controlplane.audit.services import GLOBAL_CHAIN
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Invitation, Membership, Tenant
from tests.api_mixins import assert_error_shape

pytestmark = pytest.mark.django_db

User = get_user_model()
STRONG_PASSWORD = "plum-orbit-lantern-97"


def run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def verify_chains() -> str:
    return run("audit_verify")


# create_api_token ---------------------------------------------------------------------------


class TestCreateApiToken:
    def create(self, *args: str) -> str:
        return run("create_api_token", *args).strip()

    def test_read_token_authenticates_and_reads_but_cannot_write(self, world):
        plaintext = self.create("--tenant=acme", "--user=bob", "--scope=read")
        assert plaintext.startswith("cp_") and "\n" not in plaintext
        client = bearer(plaintext)
        response = client.get("/api/v1/t/acme/members/")
        assert response.status_code == 200, response.content
        assert "bob" in [m["username"] for m in response.json()["results"]]
        denied = client.post(
            "/api/v1/t/acme/members/", {"username": "charlie", "role": "viewer"}, format="json"
        )
        assert_error_shape(denied, 403)

    def test_admin_token_can_administer(self, world):
        plaintext = self.create("--tenant=acme", "--user=alice", "--scope=admin")
        response = bearer(plaintext).post(
            "/api/v1/t/acme/members/", {"username": "charlie", "role": "viewer"}, format="json"
        )
        assert response.status_code == 202, response.content  # invited; joins on accepting
        assert Invitation.objects.for_tenant(world.acme).filter(username="charlie").exists()

    def test_write_token_cannot_administer_members(self, world):
        plaintext = self.create("--tenant=acme", "--user=alice", "--scope=write")
        client = bearer(plaintext)
        assert client.get("/api/v1/t/acme/members/").status_code == 200
        response = client.post(
            "/api/v1/t/acme/members/", {"username": "charlie", "role": "viewer"}, format="json"
        )
        assert_error_shape(response, 403)

    def test_token_is_bound_to_its_tenant(self, world):
        plaintext = self.create("--tenant=acme", "--user=alice", "--scope=admin")
        assert_error_shape(bearer(plaintext).get("/api/v1/t/globex/members/"), 404)

    def test_stored_hashed_with_expiry_and_audited(self, world):
        plaintext = self.create(
            "--tenant=acme", "--user=oscar", "--scope=write", "--expires-days=7", "--name=ci bot"
        )
        token = ApiToken.objects.for_tenant(world.acme).get(user=world.oscar)
        assert token.token_hash == hash_token(plaintext) != plaintext
        assert plaintext.startswith(f"cp_{token.prefix}_")
        assert (token.scope, token.name) == ("write", "ci bot")
        expected = timezone.now() + dt.timedelta(days=7)
        assert abs(token.expires_at - expected) < dt.timedelta(minutes=1)
        event = AuditEvent.objects.for_tenant(world.acme).get(action="api_token.create")
        assert event.actor_name == "system:create_api_token"
        assert event.target_id == str(token.pk)
        assert plaintext not in json.dumps(event.after)

    def test_default_expiry_is_the_setting(self, world, settings):
        settings.API_TOKEN_DEFAULT_EXPIRY_DAYS = 30
        self.create("--tenant=acme", "--user=bob", "--scope=read")
        token = ApiToken.objects.for_tenant(world.acme).get(user=world.bob)
        expected = timezone.now() + dt.timedelta(days=30)
        assert abs(token.expires_at - expected) < dt.timedelta(minutes=1)

    def test_unknown_tenant(self, world):
        with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
            self.create("--tenant=nope", "--user=alice", "--scope=read")
        assert not ApiToken.objects.unscoped().exists()

    def test_unknown_user(self, world):
        with pytest.raises(CommandError, match="No user named 'nobody'"):
            self.create("--tenant=acme", "--user=nobody", "--scope=read")
        assert not ApiToken.objects.unscoped().exists()

    def test_user_who_is_not_a_member(self, world):
        with pytest.raises(CommandError, match="charlie is not a member of acme"):
            self.create("--tenant=acme", "--user=charlie", "--scope=read")
        assert not ApiToken.objects.unscoped().exists()

    def test_scope_above_the_users_role_is_refused_and_says_why(self, world):
        with pytest.raises(
            CommandError,
            match="oscar is an operator, so their tokens can have scope read or write, not admin",
        ):
            self.create("--tenant=acme", "--user=oscar", "--scope=admin")
        assert not ApiToken.objects.unscoped().exists()
        assert not AuditEvent.objects.for_tenant(world.acme).exists()

    @pytest.mark.parametrize("days", ["0", "-3", "3651"])
    def test_out_of_range_expiry(self, world, days):
        with pytest.raises(CommandError, match="Give a number of days from 1 to 3650"):
            self.create("--tenant=acme", "--user=alice", "--scope=read", f"--expires-days={days}")
        assert not ApiToken.objects.unscoped().exists()
        assert not AuditEvent.objects.for_tenant(world.acme).exists()

    def test_non_numeric_expiry(self, world):
        with pytest.raises(CommandError, match="--expires-days: invalid int value: 'soon'"):
            self.create("--tenant=acme", "--user=alice", "--scope=read", "--expires-days=soon")

    def test_unknown_scope(self, world):
        with pytest.raises(CommandError, match="--scope: invalid choice: 'root'"):
            self.create("--tenant=acme", "--user=alice", "--scope=root")

    def test_missing_required_arguments(self, world):
        with pytest.raises(CommandError, match="the following arguments are required"):
            self.create("--tenant=acme")


# create_user -----------------------------------------------------------------------------------


class TestCreateUser:
    def test_creates_a_user_with_a_password(self, db):
        out = run(
            "create_user", "--username=dora", "--email=dora@x.test", "--password=" + STRONG_PASSWORD
        )
        assert "Created user dora." in out
        user = User.objects.get(username="dora")
        assert user.email == "dora@x.test" and user.check_password(STRONG_PASSWORD)
        event = AuditEvent.objects.unscoped().get(action="user.create")
        assert (event.chain, event.tenant_id) == (GLOBAL_CHAIN, None)
        assert event.actor_name == "system:create_user"
        assert STRONG_PASSWORD not in json.dumps([event.before, event.after, event.metadata])
        assert not Membership.objects.unscoped().filter(user=user).exists()

    def test_joins_a_tenant_with_a_role(self, world):
        out = run(
            "create_user",
            "--username=dora",
            f"--password={STRONG_PASSWORD}",
            "--tenant=acme",
            "--role=operator",
        )
        assert "Created user dora in acme as operator." in out
        membership = Membership.objects.for_tenant(world.acme).get(user__username="dora")
        assert membership.role == Role.OPERATOR
        event = AuditEvent.objects.for_tenant(world.acme).get(action="membership.create")
        assert event.after == {"user": "dora", "role": "operator"}
        assert event.actor_name == "system:create_user"
        assert "OK:" in verify_chains()

    def test_role_defaults_to_viewer(self, world):
        run("create_user", "--username=dora", f"--password={STRONG_PASSWORD}", "--tenant=acme")
        membership = Membership.objects.for_tenant(world.acme).get(user__username="dora")
        assert membership.role == Role.VIEWER

    def test_without_a_password_and_no_terminal_the_password_is_unusable(self, db):
        run("create_user", "--username=svc")  # pytest's stdin is not a terminal
        assert not User.objects.get(username="svc").has_usable_password()

    def test_duplicate_username(self, world):
        with pytest.raises(CommandError, match="A user named 'alice' already exists"):
            run("create_user", "--username=alice", f"--password={STRONG_PASSWORD}")

    def test_unknown_tenant_creates_nothing(self, db):
        with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
            run("create_user", "--username=dora", "--tenant=nope")
        assert not User.objects.filter(username="dora").exists()

    def test_weak_password_is_refused_with_the_reason(self, db):
        with pytest.raises(CommandError, match="too short"):
            run("create_user", "--username=dora", "--password=abc")
        assert not User.objects.filter(username="dora").exists()
        assert not AuditEvent.objects.unscoped().exists()

    def test_unknown_role(self, world):
        with pytest.raises(CommandError, match="--role: invalid choice: 'emperor'"):
            run("create_user", "--username=dora", "--tenant=acme", "--role=emperor")
        assert not User.objects.filter(username="dora").exists()


# seed_demo ---------------------------------------------------------------------------------------


def snapshot_demo() -> dict:
    return {
        "users": sorted(User.objects.values_list("username", "pk")),
        "tenants": sorted(Tenant.objects.values_list("slug", "pk")),
        "memberships": sorted(
            Membership.objects.unscoped().values_list("tenant__slug", "user__username", "role")
        ),
        "audit_events": AuditEvent.objects.unscoped().count(),
        "chains": sorted(AuditChain.objects.values_list("key", "last_seq")),
    }


class TestSeedDemo:
    @pytest.fixture(autouse=True)
    def data_dir(self, settings, tmp_path):
        settings.DATA_DIR = tmp_path
        settings.DEMO_PASSWORD = None
        return tmp_path

    def test_creates_the_demo_tenants_and_members(self, db):
        out = run("seed_demo")
        assert {
            (slug, user, role)
            for slug, user, role in Membership.objects.unscoped().values_list(
                "tenant__slug", "user__username", "role"
            )
        } >= {
            ("acme", "alice", Role.OWNER),
            ("acme", "oliver", Role.OPERATOR),
            ("acme", "vera", Role.VIEWER),
            ("globex", "charlie", Role.OWNER),
        }
        assert Tenant.objects.get(slug="acme").name == "Acme Corp"
        assert "Demo logins:" in out and "alice" in out
        for slug in ("acme", "globex"):
            tenant = Tenant.objects.get(slug=slug)
            assert AuditEvent.objects.for_tenant(tenant).filter(action="tenant.create").exists()

    def test_is_idempotent(self, db, data_dir):
        run("seed_demo")
        first = snapshot_demo()
        passwords = json.loads((data_dir / "demo-passwords.json").read_text())
        run("seed_demo")
        assert snapshot_demo() == first
        assert json.loads((data_dir / "demo-passwords.json").read_text()) == passwords
        out = verify_chains()
        assert f"OK: {first['audit_events']} events" in out

    def test_generated_passwords_are_kept_privately_and_work(self, db, data_dir):
        out = run("seed_demo")
        path = data_dir / "demo-passwords.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        passwords = json.loads(path.read_text())
        assert set(passwords) >= {"alice", "oliver", "vera", "charlie"}
        alice = User.objects.get(username="alice")
        assert alice.check_password(passwords["alice"])
        assert f"password: {passwords['alice']}" in out
        assert passwords["alice"] != passwords["charlie"]  # generated per user

    def test_demo_password_is_used_and_resets_on_rerun(self, db, settings, data_dir):
        settings.DEMO_PASSWORD = "demo-password-one-42"
        out = run("seed_demo")
        assert User.objects.get(username="alice").check_password("demo-password-one-42")
        assert User.objects.get(username="charlie").check_password("demo-password-one-42")
        assert "password: demo-password-one-42" in out
        first = snapshot_demo()

        settings.DEMO_PASSWORD = "demo-password-two-42"
        run("seed_demo")
        alice = User.objects.get(username="alice")
        assert alice.check_password("demo-password-two-42")
        assert not alice.check_password("demo-password-one-42")
        assert snapshot_demo() == first  # same rows, nothing duplicated
        assert "OK:" in verify_chains()

    def test_existing_users_keep_their_password_without_demo_password(self, db, data_dir):
        run("seed_demo")
        alice = User.objects.get(username="alice")
        alice.set_password(STRONG_PASSWORD)
        alice.save()
        (data_dir / "demo-passwords.json").unlink()
        out = run("seed_demo")
        alice.refresh_from_db()
        assert alice.check_password(STRONG_PASSWORD)
        assert "(unchanged; set DEMO_PASSWORD to reset)" in out
