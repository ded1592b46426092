"""Dashboard forms of the registry, one module per entity.

They parse and check what a person typed; services write. JSON settings (an agent's
configuration, schemas, model prices) are edited as text and parsed here; what only a
service can judge (a config against its kind's schema, a slug already taken) comes back as
a ``ValidationError`` that ``add_service_errors`` puts next to the field it names, keeping
paths such as ``config.temperature``. Secret values are write-only: their widgets never
render a value, not even the one just typed. Imports ``agents`` and ``controlplane`` only.
"""
