"""The http agent webhook contract against a loopback server, and secret key rotation."""

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.http_agent import HttpAgentError, call_http_agent
from agents.models import ProviderConnection, Secret
from controlplane import context
from controlplane.audit.models import AuditEvent
from controlplane.crypto import SecretDecryptionError
from tests.agents.registry_factories import make_agent, make_provider, make_secret


class _Agent(BaseHTTPRequestHandler):
    received: list = []
    reply: tuple = (200, {"output": {"answer": 42}, "context": {"seen": True}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"body": body, "headers": dict(self.headers)})
        status, payload = type(self).reply
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Agent.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/run", _Agent
    server.shutdown()


def _http_agent(world, url):
    make_secret(world.acme, name="ext-token", value="ext-agent-token-123")
    return make_agent(
        world.acme,
        slug="ext",
        kind="http",
        config={
            "url": url,
            "auth_header": "X-Agent-Key",
            "auth_secret": "ext-token",
            "auth_format": "{}",
            "timeout_seconds": 5,
        },
    )


@pytest.mark.django_db
class TestHttpAgentContract:
    def test_posts_input_and_context_and_returns_output(self, world, webhook):
        url, handler = webhook
        agent = _http_agent(world, url)
        result = call_http_agent(
            version=agent.current_version,
            input={"ticket": 7},
            context={"customer": "c-1"},
            run_id="r-1",
            step="triage",
            idempotency_key="r-1:triage:0",
        )
        assert result.output == {"answer": 42} and result.context == {"seen": True}
        sent = handler.received[0]
        assert sent["body"] == {
            "agent": "ext",
            "version": 1,
            "tenant": "acme",
            "run": {"id": "r-1", "step": "triage"},
            "input": {"ticket": 7},
            "context": {"customer": "c-1"},
        }
        assert sent["headers"]["X-Agent-Key"] == "ext-agent-token-123"
        assert sent["headers"]["Idempotency-Key"] == "r-1:triage:0"

    @pytest.mark.parametrize(
        ("reply", "retryable", "words"),
        [
            ((500, {"error": "boom"}), True, "HTTP 500"),
            ((429, {"error": "slow down"}), True, "HTTP 429"),
            ((400, {"error": "bad"}), False, "HTTP 400"),
            ((200, {"result": 1}), False, '"output"'),
            ((200, b"<html>"), False, "not JSON"),
            ((200, {"output": 1, "context": [1]}), False, "context"),
        ],
    )
    def test_contract_violations_are_clear_errors(self, world, webhook, reply, retryable, words):
        url, handler = webhook
        handler.reply = reply
        agent = _http_agent(world, url)
        with pytest.raises(HttpAgentError) as caught:
            call_http_agent(
                version=agent.current_version,
                input={},
                context={},
                run_id="r",
                step="s",
                idempotency_key="k",
            )
        handler.reply = (200, {"output": {"answer": 42}, "context": {"seen": True}})
        assert caught.value.retryable is retryable
        assert words in caught.value.message
        assert "ext-agent-token-123" not in caught.value.message

    def test_unreachable_agent_is_retryable(self, world):
        agent = _http_agent(world, "http://127.0.0.1:9/run")
        with pytest.raises(HttpAgentError) as caught:
            call_http_agent(
                version=agent.current_version,
                input={},
                context={},
                run_id="r",
                step="s",
                idempotency_key="k",
            )
        assert caught.value.retryable and "Could not reach" in caught.value.message


@pytest.mark.django_db
class TestRotateSecrets:
    def test_rotation_re_encrypts_under_the_new_key(self, world, settings):
        old_key = settings.SECRETS_ENCRYPTION_KEYS[0]
        make_secret(world.acme, name="crm", value="crm-value")
        make_provider(
            world.acme,
            slug="oa",
            kind="openai",
            api_key="sk-rotate-me",
            base_url="https://api.openai.com/v1",
        )
        new_key = Fernet.generate_key().decode()
        settings.SECRETS_ENCRYPTION_KEYS = [new_key]
        with context.tenant_context(world.acme), pytest.raises(SecretDecryptionError):
            list(Secret.objects.all())
        settings.SECRETS_ENCRYPTION_KEYS = [new_key, old_key]
        call_command("rotate_secrets")
        settings.SECRETS_ENCRYPTION_KEYS = [new_key]
        with context.tenant_context(world.acme):
            assert Secret.objects.get(name="crm").value == "crm-value"
            assert ProviderConnection.objects.get(slug="oa").api_key == "sk-rotate-me"
        assert AuditEvent.objects.unscoped().filter(action="secrets.rotate").exists()

    def test_rotation_without_the_old_key_changes_nothing(self, world, settings):
        old_key = settings.SECRETS_ENCRYPTION_KEYS[0]
        make_secret(world.acme, name="crm", value="crm-value")
        settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        with pytest.raises(CommandError, match="Nothing was changed"):
            call_command("rotate_secrets")
        settings.SECRETS_ENCRYPTION_KEYS = [old_key]
        with context.tenant_context(world.acme):
            assert Secret.objects.get(name="crm").value == "crm-value"


@pytest.mark.django_db
class TestKeysTheServerCannotUse:
    """Issue 12, item 14: keys rotated under a running server are a 503 that says what to do
    (API, dashboard, a run's step), never a 500; in embedded mode rotation updates the key
    file the server reads, so the server keeps working."""

    def _rotated_away(self, world, settings):
        make_provider(
            world.acme,
            slug="oa",
            kind="openai",
            api_key="sk-rotate-me",
            base_url="https://api.openai.com/v1",
        )
        settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    def test_the_api_answers_503_with_what_to_do(self, world, settings, api):
        self._rotated_away(world, settings)
        client = api(world.alice, world.acme)
        for response in (
            client.post("/api/v1/t/acme/providers/oa/test/"),
            client.get("/api/v1/t/acme/providers/oa/"),
        ):
            assert response.status_code == 503, response.content
            body = response.json()
            assert body["type"] == "server_error"
            (error,) = body["errors"]
            assert error["code"] == "secrets_key_unusable"
            assert "SECRETS_ENCRYPTION_KEYS" in error["detail"]
            assert "newest first" in error["detail"]

    def test_the_dashboard_answers_503_with_what_to_do(self, world, settings):
        from tests.dashboard.test_pages import client_for

        self._rotated_away(world, settings)
        client = client_for(world.alice)
        for response in (
            client.get("/t/acme/providers/oa/"),
            client.post("/t/acme/providers/oa/", {"op": "test"}),
        ):
            assert response.status_code == 503
            body = response.content.decode()
            assert "cannot decrypt" in body and "SECRETS_ENCRYPTION_KEYS" in body

    def test_embedded_rotation_updates_the_key_file_the_running_server_reads(
        self, world, settings, tmp_path, api
    ):
        old_key = settings.SECRETS_ENCRYPTION_KEYS[0]
        new_key = Fernet.generate_key().decode()
        key_file = tmp_path / "secrets_key"
        key_file.write_text(old_key + "\n")
        # the server: embedded, no SECRETS_ENCRYPTION_KEYS, keys read from the file at start
        settings.EMBEDDED, settings.DATA_DIR = True, tmp_path
        settings.SECRETS_ENCRYPTION_KEYS, settings.SECRETS_KEY_FILE = [old_key], key_file
        make_provider(
            world.acme,
            slug="oa",
            kind="openai",
            api_key="sk-rotate-me",
            base_url="https://api.openai.com/v1",
        )

        # the operator, in another shell: SECRETS_ENCRYPTION_KEYS=<new>,<old> rotate_secrets
        settings.SECRETS_ENCRYPTION_KEYS, settings.SECRETS_KEY_FILE = [new_key, old_key], None
        out = io.StringIO()
        call_command("rotate_secrets", stdout=out)
        assert key_file.read_text() == f"{new_key},{old_key}\n"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert str(key_file) in out.getvalue()
        assert not list(tmp_path.glob(".secrets_key.*"))  # no temporary file left behind
        settings.SECRETS_ENCRYPTION_KEYS = [new_key]  # re-encrypted under the new key
        with context.tenant_context(world.acme):
            assert ProviderConnection.objects.get(slug="oa").api_key == "sk-rotate-me"

        # the server, still with the keys it started with, reads the new file
        settings.SECRETS_ENCRYPTION_KEYS, settings.SECRETS_KEY_FILE = [old_key], key_file
        response = api(world.alice, world.acme).get("/api/v1/t/acme/providers/oa/")
        assert response.status_code == 200, response.content
        with context.tenant_context(world.acme):
            assert ProviderConnection.objects.get(slug="oa").api_key == "sk-rotate-me"


def test_an_embedded_server_starts_with_every_key_of_the_key_file(tmp_path):
    from tests.test_settings import VALID_SECRET_KEY, run_python

    new_key, old_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    (tmp_path / "secrets_key").write_text(f"{new_key},{old_key}\n")
    result = run_python(
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.SECRETS_ENCRYPTION_KEYS, settings.SECRETS_KEY_FILE)",
        tmp_path,
        {"SECRET_KEY": VALID_SECRET_KEY},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{[new_key, old_key]} {tmp_path / 'secrets_key'}"
