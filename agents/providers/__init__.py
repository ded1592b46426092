"""Model provider adapters: one module per provider kind (``openai_compat``,
``anthropic_provider``, ``simulated``), one interface (``base.Adapter``); ``sdk.SdkAdapter``
is shared by the adapters that call a vendor SDK. May import ``controlplane`` and the agents
app's models and choices; never ``policies`` or ``runs``."""
