"""The pure run engine: definition, validation, scheduler, templating, conditions, patterns.

No Django, no I/O, no other app: stdlib and small pure libraries (jinja2, re2, jsonschema)
only. The Django side that runs steps lives in ``runs.execution``.
"""
