"""The fake provider counts what the concurrency tests and benchmarks rely on."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import openai

from tests.fakes.openai_server import FakeOpenAI


def test_the_sdk_gets_a_completion_with_usage_and_the_server_counts_peak_concurrency():
    with FakeOpenAI(latency=0.3, content="hello") as server:
        client = openai.OpenAI(base_url=server.base_url("a"), api_key="k", max_retries=0)
        answers = []

        def call() -> None:
            completion = client.chat.completions.create(
                model="fake-1", messages=[{"role": "user", "content": "hi there"}]
            )
            answers.append(completion)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert [a.choices[0].message.content for a in answers] == ["hello"] * 8
        assert all(a.usage and a.usage.total_tokens > 0 for a in answers)
        stats = server.stats()
        assert (stats["peak"], stats["total"], stats["current"]) == (8, 8, 0)
        assert stats["by_prefix"]["/p/a"]["peak"] == 8
        assert httpx.get(f"{server.url}/stats").json()["total"] == 8
        httpx.post(f"{server.url}/reset")
        assert server.stats()["total"] == 0 and server.stats()["peak"] == 0


def test_a_client_that_goes_away_is_counted_aborted_at_once():
    with FakeOpenAI(latency=30) as server:

        def call() -> None:
            with contextlib.suppress(httpx.TimeoutException):
                httpx.post(f"{server.base_url()}/chat/completions", json={}, timeout=0.3)

        call()
        deadline = time.monotonic() + 2
        while server.stats()["aborted"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = server.stats()
        assert (stats["aborted"], stats["current"]) == (1, 0)
