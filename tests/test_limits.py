"""The limiter as a plain object: windows, reservations, settling, headroom."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from aigateway.limits import LIMIT_FIELDS, Limiter, LimitExceeded, duration, effective_limits

NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=timezone.utc).timestamp()


def limits(**given: int) -> dict[str, int]:
    return {f: given.get(f, 0) for f in LIMIT_FIELDS}


def test_rpm_admits_exactly_the_limit_then_names_it_and_its_reset():
    lim = Limiter()
    for _ in range(10):
        lim.admit(1, limits(rpm=10), 5, None, NOW)
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(rpm=10), 5, None, NOW)
    assert info.value.limit == "rpm" and info.value.retry_after == pytest.approx(29.5, abs=0.6)
    lim.admit(1, limits(rpm=10), 5, None, NOW + 30)  # next minute: a fresh window
    lim.admit(2, limits(rpm=10), 5, None, NOW)  # other clients are separate


def test_hour_and_day_windows():
    lim = Limiter()
    lim.admit(1, limits(rph=1), 0, None, NOW)
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(rph=1), 0, None, NOW + 60)
    assert info.value.limit == "rph"
    lim.admit(2, limits(rpd=1), 0, None, NOW)
    with pytest.raises(LimitExceeded) as info:
        lim.admit(2, limits(rpd=1), 0, None, NOW + 3 * 3600)
    assert info.value.limit == "rpd" and info.value.retry_after == pytest.approx(9 * 3600 - 30, abs=1)


def test_days_follow_the_configured_time_zone():
    lim = Limiter(ZoneInfo("Asia/Tokyo"))  # 12:00 UTC is 21:00 in Tokyo: three hours to midnight
    lim.admit(1, limits(rpd=1), 0, None, NOW)
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(rpd=1), 0, None, NOW)
    assert info.value.retry_after == pytest.approx(3 * 3600 - 30, abs=1)


def test_output_reservations_never_overshoot_the_daily_quota():
    lim = Limiter()
    res = [lim.admit(1, limits(daily_output_tokens=100), 0, 30, NOW) for _ in range(3)]
    assert [r.max_output for r in res] == [30, 30, 30]
    last = lim.admit(1, limits(daily_output_tokens=100), 0, 30, NOW)
    assert last.max_output == 10  # clamped to what is left
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(daily_output_tokens=100), 0, 30, NOW)
    assert info.value.limit == "daily_output_tokens"
    lim.settle(res[0], 0, 5, NOW)  # used 5 of its 30: 25 come back
    assert lim.admit(1, limits(daily_output_tokens=100), 0, 30, NOW).max_output == 25


def test_settle_is_idempotent_and_counts_real_usage():
    lim = Limiter()
    res = lim.admit(1, limits(daily_input_tokens=100), 40, None, NOW)
    lim.settle(res, 50, 0, NOW)
    lim.settle(res, 50, 0, NOW)
    assert lim.counters[1].day_input == 50 and lim.counters[1].reserved_input == 0
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(daily_input_tokens=100), 51, None, NOW)
    assert info.value.limit == "daily_input_tokens"


def test_per_request_caps():
    lim = Limiter()
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(max_input_tokens=10), 11, None, NOW)
    assert info.value.limit == "max_input_tokens" and info.value.retry_after == 0
    assert lim.admit(1, limits(max_output_tokens=50), 0, 1000, NOW).max_output == 50
    assert lim.admit(1, limits(max_output_tokens=50), 0, None, NOW).max_output == 50  # the gateway sets it
    assert lim.admit(1, limits(max_output_tokens=50), 0, 20, NOW).max_output == 20
    assert lim.admit(1, limits(), 0, None, NOW).max_output is None


def test_rejection_costs_nothing():
    lim = Limiter()
    lim.admit(1, limits(rpm=1, daily_output_tokens=10), 0, 5, NOW)
    before = (lim.counters[1].minute.count, lim.counters[1].reserved_output)
    with pytest.raises(LimitExceeded):
        lim.admit(1, limits(rpm=1, daily_output_tokens=10), 0, 5, NOW)
    assert (lim.counters[1].minute.count, lim.counters[1].reserved_output) == before


def test_release_gives_an_admission_back():
    lim = Limiter()
    res = lim.admit(1, limits(rpm=1, rpd=1, daily_input_tokens=100, daily_output_tokens=10), 40, 5, NOW)
    lim.release(res, NOW + 1)
    c = lim.counters[1]
    assert (c.minute.count, c.hour.count, c.day.count, c.reserved_input, c.reserved_output) == (0, 0, 0, 0, 0)
    lim.settle(res, 40, 5, NOW + 1)  # released: settling afterwards changes nothing
    assert (c.day_input, c.day_output) == (0, 0)
    lim.admit(1, limits(rpm=1, rpd=1), 0, None, NOW + 2)


def test_headroom_reports_the_tightest_windows():
    lim = Limiter()
    lims = limits(rpm=10, rph=12, rpd=100, daily_input_tokens=1000, daily_output_tokens=50)
    for _ in range(8):
        lim.admit(1, lims, 1, 2, NOW)
    room = lim.headroom(1, lims, NOW)
    assert (room.limit_requests, room.remaining_requests) == (10, 2)  # rpm: 2 left; rph: 4 left
    assert (room.limit_tokens, room.remaining_tokens) == (50, 34)
    assert 0 < room.reset_requests <= 30


def test_restore_and_defaults():
    lim = Limiter()
    lim.restore(1, NOW, 3, 3, 3, 10, 20)
    with pytest.raises(LimitExceeded):
        lim.admit(1, limits(rpm=3), 0, None, NOW)
    client = {"rpm": None, "rph": 5, **{f: None for f in LIMIT_FIELDS if f not in ("rpm", "rph")}}
    eff = effective_limits(client, limits(rpm=60, rph=1000))
    assert eff["rpm"] == 60 and eff["rph"] == 5


@pytest.mark.parametrize("seconds,text", [(0.02, "20ms"), (1.5, "1.5s"), (360, "6m0s"), (7300, "2h1m40s")])
def test_duration_format(seconds, text):
    assert duration(seconds) == text
