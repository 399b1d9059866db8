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


# ---------------------------------------------------------------- budgets (micro-dollars)
RATES = (2.5, 10.0)  # gpt-4o: USD per million tokens = micro-dollars per token


def test_a_budget_reserves_the_worst_case_and_shrinks_the_cap_to_what_is_left():
    lim = Limiter()
    budget = limits(daily_budget_usd=10_000)  # $0.01
    first = lim.admit(1, budget, 100, 500, NOW, input_bound=400, rates=RATES)
    assert (first.max_output, first.cost) == (500, 400 * 2.5 + 500 * 10)  # 6,000 reserved
    second = lim.admit(1, budget, 100, 500, NOW, input_bound=400, rates=RATES)
    assert second.max_output == (10_000 - 6_000 - 1_000) // 10 == 300  # what is left after its input
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, budget, 100, 500, NOW, input_bound=400, rates=RATES)
    assert info.value.limit == "daily_budget_usd" and "daily budget of $0.01 reached" in info.value.message
    assert info.value.retry_after == pytest.approx(12 * 3600 - 30, abs=1)
    lim.settle(first, 100, 50, NOW, cost_usd=0.00075)  # the real cost replaces the reservation
    c = lim.counters[1]
    assert (c.day_cost, c.month_cost, c.reserved_cost) == (750, 750, second.cost)
    assert lim.headroom(1, budget, NOW).remaining_budget == 10_000 - 750 - second.cost


def test_a_monthly_budget_resets_with_the_calendar_month_in_the_zone():
    lim = Limiter(ZoneInfo("Europe/Paris"))
    budget = limits(monthly_budget_usd=1_000)
    end_of_month = datetime(2026, 11, 30, 22, 30, tzinfo=timezone.utc).timestamp()  # 23:30 in Paris
    lim.settle(lim.admit(1, budget, 10, 10, end_of_month, rates=RATES), 10, 10, end_of_month, cost_usd=0.001)
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, budget, 10, 10, end_of_month + 60, rates=RATES)
    assert info.value.limit == "monthly_budget_usd" and info.value.retry_after == pytest.approx(1800 - 60, abs=1)
    lim.admit(1, budget, 10, 10, end_of_month + 3600, rates=RATES)  # December in Paris


def test_an_unpriced_model_is_not_held_by_a_budget():
    lim = Limiter()
    res = lim.admit(1, limits(daily_budget_usd=1), 1000, 1000, NOW, rates=(0.0, 0.0))
    assert res.cost == 0 and res.max_output == 1000


def test_a_reservation_held_across_midnight_is_given_back():
    """It used to stay reserved for ever once the day had turned (the quota shrank till a restart)."""
    lim = Limiter()
    res = lim.admit(1, limits(daily_output_tokens=100, daily_budget_usd=10_000), 10, 50, NOW, rates=RATES)
    tomorrow = NOW + 86400
    lim.settle(res, 10, 40, tomorrow, cost_usd=0.0004)
    c = lim.counters[1]
    assert (c.reserved_output, c.reserved_cost, c.in_flight) == (0, 0, 0)
    assert (c.day_output, c.day_cost) == (0, 0)  # yesterday's spend is not today's


def test_tokens_per_minute_and_requests_at_once():
    lim = Limiter()
    res = lim.admit(1, limits(tpm=100, max_concurrent=2), 30, 50, NOW)
    assert res.max_output == 50
    second = lim.admit(1, limits(tpm=100, max_concurrent=2), 10, 50, NOW)
    assert second.max_output == 100 - 80 - 10  # the output cap shrinks to the minute's rest
    with pytest.raises(LimitExceeded) as info:
        lim.admit(1, limits(tpm=1000, max_concurrent=2), 1, 1, NOW)
    assert info.value.limit == "max_concurrent"
    lim.settle(res, 30, 5, NOW)  # the real count replaces what it reserved in its minute
    assert lim.counters[1].tokens.count == 35 + 20 and lim.counters[1].in_flight == 1
    lim.release(second, NOW)
    assert lim.counters[1].tokens.count == 35 and lim.counters[1].in_flight == 0
