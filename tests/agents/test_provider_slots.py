"""Per-provider concurrency slots on real Redis (and the in-memory twin), real loops,
threads and processes; and ``max_concurrency`` through the API and the dashboard.

The holders measure their own concurrency (a Redis counter they increment on entry), so a
semaphore that over-admits is caught by the crowd, not by asking the semaphore.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings

from agents.models import ProviderConnection
from agents.providers import slots
from agents.providers.base import ProviderError
from tests.agents.registry_factories import make_provider
from tests.agents.slot_holders import (
    Crowd,
    crowds_in_threads,
    process_crowd,
    process_hold_forever,
    wait_for,
)
from tests.api_mixins import assert_error_shape, audit_rows

COUNTER_URL = django_settings.REDIS_URL


def database_name() -> str:
    return str(django_settings.DATABASES["default"]["NAME"])


@pytest.fixture
def provider_id():
    """A provider id of this test alone; its slots are forgotten afterwards."""
    pid = 10_000_000 + uuid.uuid4().int % 10_000_000
    yield pid
    slots.reset(pid)


@pytest.fixture(params=["redis", "memory"])
def store(request, settings):
    """Each store in turn: Redis (production) and memory (embedded mode, no REDIS_URL)."""
    if request.param == "memory":
        settings.REDIS_URL = ""
    return request.param


@pytest.fixture
def counters():
    client = redis.Redis.from_url(COUNTER_URL)
    prefix = f"test:slots:{uuid.uuid4().hex}"
    yield prefix, client
    client.delete(*[f"{prefix}:{name}" for name in ("decided", "inflight", "peak", "finished")])
    client.close()


def count(client, prefix: str, name: str) -> int:
    return int(client.get(f"{prefix}:{name}") or 0)


async def held_until(
    provider_id: int,
    limit: int,
    release: asyncio.Event,
    entered: asyncio.Event | None = None,
    **kwargs,
) -> None:
    async with slots.provider_slot(provider_id, limit, holder="test", **kwargs):
        if entered is not None:
            entered.set()
        await release.wait()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


# -- the limit holds ------------------------------------------------------------------------


def test_limit_holds_across_loops_threads_and_two_processes(provider_id, counters):
    prefix, client = counters
    limit, threads, per_thread = 5, 2, 10
    total = 3 * threads * per_thread  # two spawned processes and this one
    spec = Crowd(provider_id, limit, total, COUNTER_URL, prefix)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    children = [
        ctx.Process(
            target=process_crowd, args=(spec, threads, per_thread, database_name(), results)
        )
        for _ in range(2)
    ]
    for child in children:
        child.start()
    try:
        mine = crowds_in_threads(spec, threads, per_thread, "parent")
        theirs = []
        for _ in children:
            status, waits = results.get(timeout=120)
            assert status == "ok", waits
            theirs += waits
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    waits = mine + theirs

    assert count(client, prefix, "finished") == total
    assert count(client, prefix, "peak") == limit  # never more, and the crowd did fill it
    assert max(waits) == 1  # on_wait once per waiter, not once per retry
    assert sum(waits) == total - limit  # nobody left before all had tried once
    assert slots.in_use(provider_id) == 0
    assert client.zcard(slots.slots_key(provider_id)) == 0


def test_limit_holds_across_loops_in_threads(store, provider_id, counters):
    prefix, client = counters
    limit, threads, per_thread = 3, 3, 12
    total = threads * per_thread
    spec = Crowd(provider_id, limit, total, COUNTER_URL, prefix, hold_seconds=0.01)

    waits = crowds_in_threads(spec, threads, per_thread, store)

    assert count(client, prefix, "finished") == total
    assert count(client, prefix, "peak") == limit
    assert max(waits) == 1 and sum(waits) == total - limit
    assert slots.in_use(provider_id) == 0


def test_a_free_slot_is_taken_without_waiting(store, provider_id):
    waited = []

    async def main() -> int:
        async with slots.provider_slot(
            provider_id, 2, holder="a", on_wait=lambda: waited.append(1)
        ):
            return slots.in_use(provider_id)

    assert asyncio.run(main()) == 1
    assert waited == [] and slots.in_use(provider_id) == 0


def test_lowered_limit_holds_back_new_acquirers_until_enough_leave(store, provider_id):
    async def main() -> None:
        releases = [asyncio.Event() for _ in range(3)]
        holders = [asyncio.create_task(held_until(provider_id, 3, r)) for r in releases]
        await until(lambda: slots.in_use(provider_id) == 3)
        waited = asyncio.Event()
        entered = asyncio.Event()
        newcomer = asyncio.create_task(
            held_until(provider_id, 2, asyncio.Event(), entered, on_wait=waited.set)
        )
        await asyncio.wait_for(waited.wait(), 5)

        releases[0].set()
        await holders[0]
        await asyncio.sleep(0.3)  # a few polls: 2 held is the new limit, still no room
        assert not entered.is_set() and slots.in_use(provider_id) == 2

        releases[1].set()
        await asyncio.wait_for(entered.wait(), 5)
        assert slots.in_use(provider_id) == 2
        newcomer.cancel()
        releases[2].set()
        await asyncio.gather(holders[1], holders[2], newcomer, return_exceptions=True)
        await slots.close()

    asyncio.run(main())
    assert slots.in_use(provider_id) == 0


def test_the_slot_is_released_when_the_block_raises(store, provider_id):
    async def main() -> None:
        async with slots.provider_slot(provider_id, 1, holder="boom"):
            raise ValueError("the model call failed")

    with pytest.raises(ValueError, match="model call failed"):
        asyncio.run(main())
    assert slots.in_use(provider_id) == 0


def test_limit_below_one_is_refused(provider_id):
    async def main() -> None:
        async with slots.provider_slot(provider_id, 0, holder="x"):
            pass

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(main())


# -- cancellation ---------------------------------------------------------------------------


def test_cancel_while_waiting_leaves_nothing_and_hands_the_turn_on(store, provider_id):
    async def main() -> None:
        release = asyncio.Event()
        holder = asyncio.create_task(held_until(provider_id, 1, release))
        await until(lambda: slots.in_use(provider_id) == 1)
        first_waits, second_waits, second_in = asyncio.Event(), asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(
            held_until(provider_id, 1, asyncio.Event(), on_wait=first_waits.set)
        )
        await asyncio.wait_for(first_waits.wait(), 5)
        second_release = asyncio.Event()
        second = asyncio.create_task(
            held_until(provider_id, 1, second_release, second_in, on_wait=second_waits.set)
        )
        await asyncio.wait_for(second_waits.wait(), 5)

        first.cancel()  # the first in line, the one polling
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        await holder
        await asyncio.wait_for(second_in.wait(), 5)  # the line was not stuck behind it
        assert slots.in_use(provider_id) == 1
        second_release.set()
        await second
        await slots.close()

    asyncio.run(main())
    assert slots.in_use(provider_id) == 0
    if store == "redis":
        assert redis.Redis.from_url(COUNTER_URL).zcard(slots.slots_key(provider_id)) == 0


def test_cancel_while_holding_releases(store, provider_id):
    async def main() -> None:
        entered = asyncio.Event()
        task = asyncio.create_task(held_until(provider_id, 1, asyncio.Event(), entered))
        await asyncio.wait_for(entered.wait(), 5)
        assert slots.in_use(provider_id) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await slots.close()

    asyncio.run(main())
    assert slots.in_use(provider_id) == 0


def test_cancellations_at_random_moments_leave_no_slot_behind(store, provider_id):
    """Some cancels land while an admission is in flight to Redis; none may leak a slot."""

    async def main() -> None:
        async def briefly() -> None:
            async with slots.provider_slot(provider_id, 3, holder="storm"):
                await asyncio.sleep(0.002)

        tasks = [asyncio.create_task(briefly()) for _ in range(150)]
        for index, task in enumerate(tasks):
            if index % 2:
                asyncio.get_running_loop().call_later(index % 17 / 1000, task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(task.cancelled() for task in tasks) > 0

        # All three slots are free again: three holders get in at once.
        entered = [asyncio.Event() for _ in range(3)]
        release = asyncio.Event()
        holders = [
            asyncio.create_task(
                held_until(provider_id, 3, release, e, on_wait=lambda: pytest.fail("had to wait"))
            )
            for e in entered
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in entered)), 5)
        release.set()
        await asyncio.gather(*holders)
        await slots.close()

    asyncio.run(main())
    assert slots.in_use(provider_id) == 0


def test_cancel_while_the_admission_is_in_flight_leaves_no_slot_behind(store, provider_id):
    """Cancelled after the script was sent but before its answer was read: Redis may have
    admitted the holder, so the cancelled acquire must take the slot back."""

    async def main() -> set[int]:
        entered: set[int] = set()

        async def take(turn: int) -> None:
            async with slots.provider_slot(provider_id, 1000, holder="inflight"):
                entered.add(turn)
                await asyncio.sleep(0)

        for turn in range(60):
            task = asyncio.create_task(take(turn))
            for _ in range(turn % 30):  # let it get a varying way into the acquire
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await slots.close()
        return entered

    entered = asyncio.run(main())
    assert len(entered) < 60  # some cancels did land before admission was known
    assert slots.in_use(provider_id) == 0


# -- leases ---------------------------------------------------------------------------------


def test_a_sigkilled_holder_frees_its_slot_when_the_lease_expires(provider_id):
    flag = f"test:slots:{uuid.uuid4().hex}:held"
    counters = redis.Redis.from_url(COUNTER_URL)
    child = multiprocessing.get_context("spawn").Process(
        target=process_hold_forever, args=(provider_id, 1.0, database_name(), COUNTER_URL, flag)
    )
    child.start()
    try:
        wait_for(lambda: counters.get(flag) is not None, 60, "the child to hold its slot")
        assert slots.in_use(provider_id) == 1
        time.sleep(1.5)  # past one lease: the live child renews it
        assert slots.in_use(provider_id) == 1
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=10)
        killed_at = time.monotonic()

        waited = []

        async def take() -> float:
            async with asyncio.timeout(10):  # a lease that never expired would hang here
                async with slots.provider_slot(
                    provider_id, 1, holder="heir", on_wait=lambda: waited.append(1)
                ):
                    admitted = time.monotonic() - killed_at
            await slots.close()
            return admitted

        after = asyncio.run(take())
    finally:
        if child.is_alive():
            child.kill()
        counters.delete(flag)
        counters.close()
    assert waited == [1]  # the dead child's lease still counted at first
    assert after < 1.0 + 1.0  # freed within one lease (plus polling, on a busy machine)
    assert slots.in_use(provider_id) == 0


def test_a_long_call_keeps_its_slot_by_renewing(store, provider_id):
    async def main() -> None:
        release = asyncio.Event()
        holder = asyncio.create_task(held_until(provider_id, 1, release, lease_seconds=0.3))
        await until(lambda: slots.in_use(provider_id) == 1)
        waited, entered = asyncio.Event(), asyncio.Event()
        other = asyncio.create_task(
            held_until(provider_id, 1, asyncio.Event(), entered, on_wait=waited.set)
        )
        await asyncio.wait_for(waited.wait(), 5)
        await asyncio.sleep(1.0)  # over three leases
        assert not entered.is_set() and slots.in_use(provider_id) == 1
        release.set()
        await holder
        await asyncio.wait_for(entered.wait(), 5)
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        await slots.close()

    asyncio.run(main())
    assert slots.in_use(provider_id) == 0


# -- Redis trouble --------------------------------------------------------------------------


def test_redis_unreachable_at_acquire_is_a_clear_retryable_error(settings):
    provider_id = 1
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"

    async def main() -> None:
        try:
            async with slots.provider_slot(provider_id, 5, holder="x"):
                pytest.fail("admitted without a limit check")
        finally:
            await slots.close()

    with pytest.raises(slots.ProviderSlotsUnavailable) as caught:
        asyncio.run(main())
    err = caught.value
    assert isinstance(err, ProviderError) and err.retryable
    assert err.code == "provider_slots_unavailable"
    assert "concurrency limit could not be checked" in err.message
    with pytest.raises(slots.ProviderSlotsUnavailable):
        slots.in_use(provider_id)


def test_redis_lost_while_holding_does_not_fail_the_release(settings, caplog):
    provider_id = 1
    from tests.reliability.faults import RedisServer

    server = RedisServer()
    settings.REDIS_URL = server.url
    caplog.set_level(logging.WARNING, logger="agents.providers.slots")

    async def main() -> str:
        async with slots.provider_slot(provider_id, 1, holder="x", lease_seconds=30):
            server.kill()
            return "answered"

    try:
        assert asyncio.run(main()) == "answered"
    finally:
        server.kill()
    assert "its lease will free it" in caplog.text


# -- the field: API and dashboard -----------------------------------------------------------


@pytest.mark.django_db
def test_api_edits_max_concurrency_within_bounds_and_audits_it(world, api):
    provider = make_provider(world.acme, slug="sim")
    client = api(world.adam, world.acme)
    url = f"/api/v1/t/acme/providers/{provider.slug}/"
    assert client.get(url).json()["max_concurrency"] == 100

    for bad in (0, 10001, -3):
        body = assert_error_shape(
            client.patch(url, {"max_concurrency": bad}, format="json"),
            400,
            attr="max_concurrency",
        )
        assert "requests in flight at once" in body["errors"][0]["detail"]

    response = client.patch(url, {"max_concurrency": 5}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["max_concurrency"] == 5
    assert response.json()["slots_in_use"] == 0
    assert ProviderConnection.objects.unscoped().get(pk=provider.pk).max_concurrency == 5
    row = audit_rows(world.acme, "provider.update").latest("id")
    assert (row.before["max_concurrency"], row.after["max_concurrency"]) == (100, 5)


@pytest.mark.django_db
def test_api_create_takes_max_concurrency(world, api):
    client = api(world.adam, world.acme)
    response = client.post(
        "/api/v1/t/acme/providers/",
        {"slug": "capped", "name": "Capped", "kind": "simulated", "max_concurrency": 7},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert ProviderConnection.objects.unscoped().get(slug="capped").max_concurrency == 7
    row = audit_rows(world.acme, "provider.create").latest("id")
    assert row.after["max_concurrency"] == 7


@pytest.mark.django_db
def test_another_tenants_provider_limit_is_not_editable(world, api):
    foreign = make_provider(world.globex, slug="globex-sim")
    client = api(world.alice, world.acme)

    response = client.patch(
        f"/api/v1/t/acme/providers/{foreign.slug}/", {"max_concurrency": 1}, format="json"
    )
    assert_error_shape(response, 404)
    response = api(world.alice, world.acme).patch(
        f"/api/v1/t/globex/providers/{foreign.slug}/", {"max_concurrency": 1}, format="json"
    )
    assert_error_shape(response, 404)
    assert ProviderConnection.objects.unscoped().get(pk=foreign.pk).max_concurrency == 100


@pytest.mark.django_db
def test_dashboard_shows_slots_in_use_and_edits_the_limit(world, client):
    provider = make_provider(world.acme, slug="sim")
    client.force_login(world.alice)
    holding, release = threading.Event(), threading.Event()

    async def hold_one() -> None:
        async with slots.provider_slot(provider.pk, 100, holder="page"):
            holding.set()
            await asyncio.to_thread(release.wait, 30)
        await slots.close()

    holder = threading.Thread(target=asyncio.run, args=(hold_one(),))
    holder.start()
    try:
        assert holding.wait(10)
        page = client.get("/t/acme/providers/sim/")
    finally:
        release.set()
        holder.join(timeout=30)
    assert page.status_code == 200
    assert "1 of 100 slots in use" in page.content.decode()

    form = client.get("/t/acme/providers/sim/edit/").content.decode()
    assert 'name="max_concurrency"' in form and 'value="100"' in form
    response = client.post(
        "/t/acme/providers/sim/edit/",
        {
            "slug": "sim",
            "name": "Provider",
            "kind": "simulated",
            "models": '[{"name": "sim-1"}]',
            "timeout_seconds": "60",
            "max_concurrency": "12",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    provider.refresh_from_db()
    assert provider.max_concurrency == 12
    page = client.get("/t/acme/providers/sim/").content.decode()
    assert "0 of 12 slots in use" in page
    slots.reset(provider.pk)
