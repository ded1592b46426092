"""``create_user``, ``seed_demo`` (runs each installed app's ``demo`` module, found by name) and
``serve``."""
