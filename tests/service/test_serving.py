"""service.serving's HeapSettler: one full collection per burst of reloads, never postponed forever."""

from __future__ import annotations

import asyncio
import gc

from service.serving import HeapSettler
from tests.service.conftest import eventually


async def test_a_burst_of_requests_settles_once_after_it_goes_quiet() -> None:
    settler = HeapSettler(quiet_s=0.2, max_defer_s=60.0)
    try:
        for _ in range(10):
            settler.settle_soon()
            await asyncio.sleep(0.01)
        assert settler.settled == 0  # still inside the burst's quiet window
        assert settler.pending
        await eventually(lambda: settler.settled == 1, timeout_s=5.0)
        assert not settler.pending
        await asyncio.sleep(0.3)
        assert settler.settled == 1  # nothing re-armed it: no second collection
        assert gc.get_freeze_count() > 0  # what survived is frozen out of the collector's reach
    finally:
        settler.cancel()
        gc.unfreeze()


async def test_a_storm_that_never_goes_quiet_is_settled_within_the_max_deferral() -> None:
    settler = HeapSettler(quiet_s=0.2, max_defer_s=0.25)
    try:
        async with asyncio.timeout(5.0):
            while settler.settled == 0:  # re-armed every 50 ms, well inside the quiet window
                settler.settle_soon()
                await asyncio.sleep(0.05)
    finally:
        settler.cancel()
        gc.unfreeze()
    assert settler.settled == 1


async def test_cancel_drops_a_pending_settle() -> None:
    settler = HeapSettler(quiet_s=0.05, max_defer_s=1.0)
    settler.settle_soon()
    settler.cancel()
    await asyncio.sleep(0.15)
    assert settler.settled == 0
    assert not settler.pending
