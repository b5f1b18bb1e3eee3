"""Admission gates (no HTTP): bounded in flight, bounded and ordered waiting, shedding with a
Retry-After from the measured service time, a separate executor per class."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.core.config import Settings
from app.services.admission import (
    Admission,
    ClassLimits,
    OverloadedError,
    SpareThreads,
    admission_wait_s,
    default_limits,
    limits_from_settings,
    offload,
    running_alone,
)


def run(coro):
    return asyncio.run(coro)


def test_admits_up_to_the_bound_then_sheds_at_once():
    async def main():
        adm = Admission({"a": ClassLimits(max_in_flight=2, max_waiting=0, max_wait_s=1.0)})
        gate = adm["a"]
        await gate.acquire()
        await gate.acquire()
        with pytest.raises(OverloadedError) as e:
            await gate.acquire()
        assert e.value.kind == "unavailable" and e.value.retry_after >= 1
        assert gate.stats.shed == 1 and gate.in_flight == 2
        gate.release(0.1)
        await gate.acquire()  # a freed slot is taken again
        assert gate.in_flight == 2

    run(main())


def test_waiters_are_served_in_order_and_the_wait_is_bounded():
    async def main():
        adm = Admission({"a": ClassLimits(max_in_flight=1, max_waiting=2, max_wait_s=0.2)})
        gate = adm["a"]
        await gate.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            await gate.acquire()
            order.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(2)]
        await asyncio.sleep(0.01)
        assert gate.waiting == 2
        with pytest.raises(OverloadedError):  # the wait list is full: refused without waiting
            await gate.acquire()
        gate.release(0.05)  # hands the slot to waiter 0
        await asyncio.sleep(0.01)
        gate.release(0.05)  # then to waiter 1
        await asyncio.gather(*tasks)
        assert order == [0, 1] and gate.in_flight == 1
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(OverloadedError):  # nobody releases: refused after max_wait_s
            await gate.acquire()
        assert 0.15 <= loop.time() - t < 1.0
        assert gate.stats.timed_out == 1 and gate.waiting == 0

    run(main())


def test_a_cancelled_waiter_passes_its_slot_on():
    async def main():
        adm = Admission({"a": ClassLimits(max_in_flight=1, max_waiting=4, max_wait_s=5)})
        gate = adm["a"]
        await gate.acquire()
        first = asyncio.create_task(gate.acquire())
        second = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0.01)
        gate.release(None)
        await asyncio.wait_for(second, 1)
        assert gate.in_flight == 1 and gate.waiting == 0
        gate.release(None)
        assert gate.in_flight == 0

    run(main())


def test_retry_after_follows_the_measured_service_time():
    adm = Admission({"a": ClassLimits(max_in_flight=1, max_waiting=0, max_wait_s=0)})
    gate = adm["a"]
    gate.in_flight = 1
    gate.release(4.0)  # one request took 4 s
    gate.in_flight = 1
    assert gate.retry_after() == pytest.approx(8.0)  # the one in flight, then this one
    gate.in_flight = 0


def test_offload_runs_on_the_admitted_class_threads():
    async def main():
        adm = Admission(
            {
                "a": ClassLimits(max_in_flight=1, max_waiting=0, max_wait_s=0),
                "b": ClassLimits(max_in_flight=1, max_waiting=0, max_wait_s=0),
            }
        )
        names = {}
        for cls in ("a", "b"):
            async with adm.slot(cls):
                names[cls] = await offload(lambda: threading.current_thread().name)
        outside = await offload(lambda: threading.current_thread().name)
        adm.shutdown()
        return names, outside

    names, outside = run(main())
    assert names["a"].startswith("work-a") and names["b"].startswith("work-b")
    assert not outside.startswith("work-")


def test_limits_from_settings_apply_overrides_field_by_field():
    s = Settings(admission_cpus=4, admission={"refine": {"max_in_flight": 3}})
    limits = limits_from_settings(s)
    assert limits["refine"].max_in_flight == 3
    assert limits["refine"].max_wait_s == default_limits(4)["refine"].max_wait_s
    assert limits["solve"] == default_limits(4)["solve"]
    with pytest.raises(ValueError):
        Settings(admission={"nope": {"max_in_flight": 1}})


def test_estimate_admits_its_thread_count_unless_batching_pays():
    cpu, accelerated = default_limits(4), default_limits(4, batching=True)
    assert cpu["estimate"].max_in_flight == cpu["estimate"].threads == 3
    assert accelerated["estimate"].max_in_flight == 8 and accelerated["estimate"].threads == 3
    assert {k: v for k, v in cpu.items() if k != "estimate"} == {
        k: v for k, v in accelerated.items() if k != "estimate"
    }
    s = Settings(admission_cpus=4, admission={"estimate": {"max_waiting": 1}})
    assert limits_from_settings(s, batching=True)["estimate"].max_in_flight == 8
    assert limits_from_settings(s, batching=True)["estimate"].max_waiting == 1


def test_relimit_keeps_the_threads_and_hands_new_slots_to_the_waiters():
    async def main():
        adm = Admission({"a": ClassLimits(max_in_flight=1, max_waiting=4, max_wait_s=5, threads=1)})
        await adm["a"].acquire()
        waiters = [asyncio.create_task(adm["a"].acquire()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert adm["a"].waiting == 3
        adm.relimit({"a": ClassLimits(max_in_flight=3, max_waiting=4, max_wait_s=5, threads=8)})
        await asyncio.sleep(0.01)
        done = [w.done() for w in waiters]
        state = (adm["a"].in_flight, adm["a"].waiting, adm["a"].threads)
        adm["a"].release(None)  # the first holder leaves: the last waiter gets its slot
        await asyncio.gather(*waiters)
        return done, state, adm["a"].in_flight

    done, state, in_flight = run(main())
    assert done == [True, True, False] and state == (3, 1, 1) and in_flight == 3


def test_a_request_knows_how_long_it_waited_for_its_slot():
    async def main():
        adm = Admission({"a": ClassLimits(max_in_flight=1, max_waiting=1, max_wait_s=5)})
        seen = {"outside": admission_wait_s()}

        async def second():
            async with adm.slot("a"):
                seen["second"] = admission_wait_s()

        async with adm.slot("a"):
            seen["first"] = admission_wait_s()
            task = asyncio.create_task(second())
            await asyncio.sleep(0.1)
        await task
        return seen

    seen = run(main())
    assert seen["outside"] is None and seen["first"] < 0.05 and seen["second"] >= 0.09


def test_a_lagging_event_loop_sheds_every_class_at_once():
    async def main():
        adm = Admission(
            {"a": ClassLimits(max_in_flight=8, max_waiting=8, max_wait_s=1)}, max_loop_lag_s=0.05
        )
        adm.start()
        await asyncio.sleep(0.05)
        await adm["a"].acquire()  # an idle loop: admitted
        adm["a"].release(0.01)
        adm.loop.lag = 0.2  # as the watch would report for a saturated loop
        with pytest.raises(OverloadedError) as e:
            await adm["a"].acquire()
        assert "behind" in e.value.message and e.value.retry_after == 1.0
        assert adm["a"].in_flight == 0 and adm["a"].stats.shed == 1
        await adm.stop()

    run(main())


def test_loop_lag_watch_sees_a_blocked_loop():
    async def main():
        adm = Admission({"a": ClassLimits(1, 0, 0)}, max_loop_lag_s=0.05)
        adm.start()
        await asyncio.sleep(0.05)
        quiet = adm.loop.lag
        for _ in range(20):  # 20 turns of 30 ms each with the loop blocked
            threading.Event().wait(0.03)
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        busy = adm.loop.lag
        await adm.stop()
        return quiet, busy

    quiet, busy = run(main())
    assert quiet < 0.01 and busy > 0.01


def test_spare_threads_help_a_request_only_while_it_runs_alone():
    """A lone request's side task runs on a spare thread; with a second request in flight
    (any class), or outside a request, the caller runs it itself."""

    async def main():
        limits = ClassLimits(max_in_flight=2, max_waiting=0, max_wait_s=0)
        adm = Admission({"a": limits, "b": limits})
        spare = SpareThreads(1, "spare")
        seen = {"outside": (running_alone(), spare.start(threading.get_ident)())}
        async with adm.slot("a"):
            seen["alone"] = (running_alone(), spare.start(threading.get_ident)())
            async with adm.slot("b"):
                seen["two"] = (running_alone(), spare.start(threading.get_ident)())
        spare.shutdown()
        async with adm.slot("a"):  # a new pool after shutdown
            seen["again"] = (running_alone(), spare.start(threading.get_ident)())
        spare.shutdown()
        return seen

    me = threading.get_ident()
    seen = run(main())
    assert seen["outside"] == (False, me) and seen["two"] == (False, me)
    for key in ("alone", "again"):
        assert seen[key][0] and seen[key][1] != me


def test_spare_threads_run_inline_when_every_spare_is_busy():
    async def main():
        adm = Admission({"a": ClassLimits(max_in_flight=1, max_waiting=0, max_wait_s=0)})
        spare = SpareThreads(1, "spare")
        release = threading.Event()
        async with adm.slot("a"):
            busy = spare.start(release.wait, 10)  # holds the only spare thread
            second = spare.start(threading.get_ident)()
            release.set()
            assert busy() is True
        spare.shutdown()
        return second

    assert run(main()) == threading.get_ident()
