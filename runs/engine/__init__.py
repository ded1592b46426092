"""The run engine: a pure scheduler (no Django, no I/O) plus step executors."""
