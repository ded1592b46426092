"""Every API route must be covered by a generic endpoint test class (or a declared test class),
and every websocket route by a test class declaring it in ``covered_websocket_routes``.

A route added without tests fails here, naming it.
"""

import importlib
import inspect
import pkgutil
from pathlib import Path

from django.urls import URLPattern, URLResolver, get_resolver

import tests
from controlplane.routing import websocket_urlpatterns


def _route_names(resolver: URLResolver, namespace: str = "") -> set[str]:
    names: set[str] = set()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = (
                f"{namespace}:{pattern.namespace}"
                if namespace and pattern.namespace
                else (pattern.namespace or namespace)
            )
            names |= _route_names(pattern, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(f"{namespace}:{pattern.name}" if namespace else pattern.name)
    return names


def covered_routes(prefix: str, attribute: str = "covered_routes") -> set[str]:
    """Routes declared by test classes (``covered_routes`` attribute or classmethod)."""
    covered: set[str] = set()
    root = Path(tests.__file__).parent
    for module_info in pkgutil.walk_packages([str(root)], prefix="tests."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not cls.__name__.startswith("Test"):
                continue
            routes = getattr(cls, attribute, None)
            if routes is None:
                continue
            covered |= set(routes() if callable(routes) else routes)
    return {r for r in covered if r.startswith(prefix)}


def test_every_api_route_has_generic_tests():
    routes = {name for name in _route_names(get_resolver()) if name.startswith("api:")}
    assert "api:member-list" in routes  # the walk itself works
    missing = routes - covered_routes("api:")
    assert not missing, f"API routes without a test class declaring them: {sorted(missing)}"


def test_every_websocket_route_has_tests():
    routes = {str(p.pattern) for p in websocket_urlpatterns}
    assert "ws/t/<slug:tenant>/events/" in routes  # the walk itself works
    missing = routes - covered_routes("ws/", attribute="covered_websocket_routes")
    assert not missing, f"Websocket routes without a test class declaring them: {sorted(missing)}"
