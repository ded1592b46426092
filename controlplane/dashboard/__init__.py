"""The dashboard's shared parts: base pages (tenant, lists, objects, forms, operations),
forms, charts and layout, and the pages of the foundation (sign-in, members, tokens, audit).
Apps' pages derive from these. Imports ``controlplane`` only."""
