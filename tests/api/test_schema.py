import json
import re

import pytest

from controlplane.tenancy.models import Tenant
from runs.models import Workflow
from tests.api_mixins import assert_error_shape


@pytest.mark.django_db
class TestApiDocs:
    covered_routes = {"api:schema", "api:docs", "api:redoc"}

    def test_schema_is_openapi_3_and_lists_tenant_resources(self, client):
        response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert response.status_code == 200
        schema = json.loads(response.content)
        assert schema["openapi"].startswith("3.")
        paths = schema["paths"]
        for path in (
            "/api/v1/tenants/",
            "/api/v1/t/{tenant}/members/",
            "/api/v1/t/{tenant}/tokens/",
            "/api/v1/t/{tenant}/audit-events/",
            "/api/v1/t/{tenant}/audit-events/export/",
        ):
            assert path in paths, path
        assert "bearerAuth" in schema["components"]["securitySchemes"]

    def test_docs_are_served_without_internet(self, client):
        for url in ("/api/v1/docs/", "/api/v1/redoc/"):
            page = client.get(url).content.decode()
            assert "/static/drf_spectacular_sidecar/" in page, url
            assert "cdn" not in page.lower(), url
        asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
        assert asset.status_code == 200

    def test_unknown_api_url_is_json_404(self, client):
        assert_error_shape(client.get("/api/v1/nothing-here/"), 404)

    def test_unknown_tenant_is_404_not_500(self, client, world):
        client.force_login(world.alice)
        assert not Tenant.objects.filter(slug="nope").exists()
        assert_error_shape(client.get("/api/v1/t/nope/members/"), 404)


def test_schema_generates_without_warnings():
    """Every view documents its shape: drf-spectacular validates the schema, warnings fail."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


# the schema agrees with behaviour (issue 11, item 11) ----------------------------------------
def _spec(client) -> dict:
    return json.loads(client.get("/api/v1/schema/?format=json").content)


def _url(path: str, objects, world) -> str:
    from tests.security.test_schemathesis import PATH_OBJECTS

    for regex, parameters in PATH_OBJECTS:
        if re.search(regex, path):
            for name, (kind, key) in parameters.items():
                path = path.replace(f"{{{name}}}", str(objects.keys(kind, world.acme)[key]))
            break
    return path.replace("{tenant}", "acme")


@pytest.mark.django_db
class TestSchemaAgreesWithBehaviour:
    def test_format_json_is_json_and_format_yaml_is_yaml(self, client):
        response = client.get("/api/v1/schema/?format=json")
        assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
        assert json.loads(response.content)["openapi"].startswith("3.")
        response = client.get("/api/v1/schema/?format=yaml")
        assert response["Content-Type"].startswith("application/vnd.oai.openapi")
        assert response.content.startswith(b"openapi: 3")
        assert_error_shape(client.get("/api/v1/schema/?format=xml"), 400, attr="format")

    def test_every_operation_documents_400_and_503_and_every_body_413(self, client):
        for path, item in _spec(client)["paths"].items():
            for method, operation in item.items():
                codes = set(operation["responses"])
                assert {"400", "503"} <= codes, (method, path, codes)
                if method in ("post", "put", "patch"):
                    assert "413" in codes, (method, path, codes)

    def test_no_documented_operation_is_refused_to_the_owner_as_not_allowed(self, world, api):
        from tests.test_tenant_matrix import Objects

        objects, owner = Objects(world), api(world.alice, world.acme)
        owner.raise_request_exception = False
        paths = _spec(owner)["paths"]
        urls = {path: _url(path, objects, world) for path in paths}  # before any DELETE runs
        refused = []
        for path, item in paths.items():
            if not path.startswith("/api/v1/t/"):
                continue
            url = urls[path]
            for method in item:
                response = getattr(owner, method)(url, {}, format="json")
                if response.status_code in (403, 405):
                    refused.append((method, path, response.status_code))
        assert not refused, refused

    def test_methods_not_documented_are_405_for_every_member_with_what_to_do(self, world, api):
        from tests.test_tenant_matrix import Objects

        objects = Objects(world)
        spec = _spec(api(world.alice, world.acme))
        workflow = objects.keys("workflow", world.acme)["slug"]
        agent = objects.keys("agent", world.acme)["slug"]
        cases = [
            ("delete", f"/api/v1/t/acme/workflows/{workflow}/", 'PATCH {"status"'),
            ("delete", f"/api/v1/t/acme/agents/{agent}/", 'PATCH {"status"'),
            ("put", f"/api/v1/t/acme/agents/{agent}/", "PATCH"),
            ("delete", f"/api/v1/t/acme/tools/{objects.keys('tool', world.acme)['slug']}/", ""),
            (
                "delete",
                f"/api/v1/t/acme/providers/{objects.keys('provider', world.acme)['slug']}/",
                "",
            ),
        ]
        for method, url, hint in cases:
            documented = re.sub(r"/t/acme/(\w[\w-]*)/[^/]+/$", r"/t/{tenant}/\1/{slug}/", url)
            assert method not in spec["paths"][documented], (method, documented)
            for user in (world.alice, world.bob):
                response = getattr(api(user, world.acme), method)(url, {}, format="json")
                body = assert_error_shape(response, 405)
                assert hint in body["errors"][0]["detail"], body
        assert Workflow.objects.for_tenant(world.acme).filter(slug=workflow).exists()
