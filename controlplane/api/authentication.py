"""DRF authentication: ``Authorization: Bearer <token>`` for programs, session for the browser."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from controlplane.api.services import api_token_authenticate


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates an API token; ``request.auth`` is the ApiToken."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: send 'Authorization: Bearer <token>'."
            )
        token = api_token_authenticate(parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed(
                "The API token is unknown, expired or revoked: create a new one."
            )
        return token.user, token

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """Django session with CSRF enforced on unsafe methods (DRF's behaviour, kept explicit)."""
