import json

import pytest

from controlplane.tenancy.models import Tenant
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
