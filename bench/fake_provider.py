"""The benchmarks' model provider: the scripted OpenAI-compatible server of
``tests/fakes/openai_server.py`` (one home for tests and benchmarks), runnable from here.

Usage: .venv/bin/python bench/fake_provider.py --port 0 --latency 2
(prints its port, then serves until SIGTERM or Ctrl-C; GET /stats, POST /reset, POST /config).
"""

from __future__ import annotations

import sys

from bench_common import ROOT

sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeOpenAI, main

__all__ = ["FakeOpenAI", "main"]

if __name__ == "__main__":
    main()
