"""The registry's REST API: serializers, viewsets and their router registration (wired in
``controlplane/urls.py``). Imports ``agents`` and ``controlplane`` only."""
