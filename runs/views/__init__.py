"""Dashboard pages of workflows (``workflows``: graph, versions, publish, start a run) and
runs (``runs``: list, detail with steps, timeline and progress, cancel, resume, rerun).

Pages mirror the runs API and share its services: forms parse, the services validate and
write, and ``TenantPageMixin`` enforces the tenant and each method's permission (a page
about one object looks it up inside the tenant first, so another tenant's object is a
404). An action needing more than the page's POST permission names it in its
``@operation``, audited like the base. While a run is active its page follows it over a
websocket (``runs.consumers``, ``static/js/live.js``), refreshing its state block with
``?state``; without websockets it polls itself with htmx (``?after=<seq>``) and receives
only the events after the last one it shows.
"""
