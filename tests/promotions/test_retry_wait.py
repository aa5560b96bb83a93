"""How long a send waits before its retry (sending.retry_wait): plain values, no broker. The
end-to-end waits (Twilio's Retry-After of 30 s kept, one of an hour cut to the longest
backoff) are in test_sending.py."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotions.sending import MAX_SEND_BACKOFF_SECONDS, retry_wait


@pytest.mark.parametrize(("retries", "seconds"), [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32)])
def test_the_wait_doubles_with_each_retry(retries, seconds):
    assert retry_wait(retries, None, jitter=0) == timedelta(seconds=seconds)


@pytest.mark.parametrize("retries", [6, 10, 50])
def test_the_doubling_stops_at_the_longest_backoff(retries):
    assert retry_wait(retries, None, jitter=0) == timedelta(seconds=MAX_SEND_BACKOFF_SECONDS)


@pytest.mark.parametrize(("retries", "retry_after"), [(0, 0.5), (0, 3), (5, 3), (5, 45)])
def test_the_wait_the_provider_asked_for_replaces_the_doubling_shorter_or_longer(
    retries, retry_after
):
    assert retry_wait(retries, retry_after, jitter=0) == timedelta(seconds=retry_after)


def test_a_provider_asking_for_no_wait_gets_only_the_jitter():
    assert retry_wait(3, 0, jitter=0.25) == timedelta(seconds=0.25)


@given(
    retries=st.integers(min_value=0, max_value=100),
    retry_after=st.none() | st.floats(min_value=0, max_value=86_400),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_the_jitter_adds_under_a_second_to_a_wait_never_past_the_longest(
    retries, retry_after, jitter
):
    steady = retry_wait(retries, retry_after, jitter=0)
    jittered = retry_wait(retries, retry_after, jitter=jitter)

    assert steady <= timedelta(seconds=MAX_SEND_BACKOFF_SECONDS)
    assert steady <= jittered <= steady + timedelta(seconds=1)
