"""OpenAPI descriptions of our authentication classes (loaded by the api app)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (cp_...) bound to one tenant; create it in the "
            "dashboard or with manage.py create_api_token.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.SessionAuthentication"
    name = "sessionAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
