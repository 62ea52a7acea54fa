"""The Replicate budget as the account shows it: a pure rule from one response's rate-limit headers.

Replicate answers every request with ``ratelimit-remaining`` (whole requests the account's bucket
still holds after this one) and ``ratelimit-reset`` (whole seconds until that bucket is full again);
a 429 adds ``Retry-After``. The documented budgets (600 creates/min, 3000 reads/min) are not what
every account gets: an account short of credit may create 6 a minute with a burst of 1. This module
turns one answer into the account's refill rate as far as it can be proven; `worker.ratelimit`
keeps it in Redis for the whole fleet and paces the fleet at `ratelimit.HEADROOM` (98 %) of it. No I/O, no clock.

Why the rule is stable:

* **It never guesses high.** After a granted request the account's bucket lacks at least the
  `deficit` computed here (one request, or more when it was seen fuller before), and the reset header
  is rounded up, so ``deficit / reset`` is at most the true refill rate. The fleet paces at 98 % of
  that, so once an answer has been seen it never spends faster than the account refills: no stream
  of 429s, and no swinging into them. A 6/min burst-1 account reports ``remaining 0, reset 10``
  after every create: exactly 0.1/s, paced at 5.88/min.
* **It climbs back only on proof of spare room.** The estimate can be low (a deficit larger than
  we can see, e.g. another client drained the burst). The account then refills faster than we
  spend, until it reports a spare request and a full bucket within a second of our take; only that
  raises the rate (x1.25 per such answer, up to the ceiling). A slow account never shows it (its
  reset after a take is the time one request takes to refill, > 1 s), so it is never probed into a 429.
* **A normal account is never slowed.** At 98 % of 600/min the bucket stays full: each answer
  reports a spare request and reset <= 1 s, so the rate stays at the ceiling.
* **Nothing is spent blind.** Until the fleet has seen one answer, it sends one request at a time
  (`worker.ratelimit`), so even the first seconds cannot burst into an account that allows 1.
* **A 429 forgets what it contradicts.** The fleet pauses for its Retry-After (the caller does that),
  and the capacity seen so far is forgotten (the account may have lost credit), so the next granted
  answer is read without it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Replicate's documented budgets (requests per minute), what a fleet assumes before any answer.
DOCUMENTED_PER_MIN = {"create": 600.0, "read": 3000.0}
KINDS = tuple(DOCUMENTED_PER_MIN)
GROWTH = 1.25  # per answer that shows spare room and a bucket full within a second
# Below this the fleet would wait over an hour for one request: not a rate any account shows.
MIN_RATE = 1.0 / 3600.0


@dataclass(frozen=True)
class Seen:
    """What one Replicate answer said about the budget of its kind."""

    status: int
    remaining: int | None  # ratelimit-remaining: None when missing or unreadable
    reset: float | None  # ratelimit-reset, seconds until the account's bucket is full

    @property
    def throttled(self) -> bool:
        return self.status == 429


@dataclass(frozen=True)
class Account:
    """The fleet's belief about the account, for one kind: refill rate (requests/s) and the largest
    bucket it has shown (``remaining + 1`` after a granted request; 0 = not seen)."""

    rate: float
    capacity: int = 0


@dataclass(frozen=True)
class Learned:
    account: Account
    tokens_at_most: float | None
    """The fleet's bucket must not hold more than the account says it has (None: no limit)."""


def ceiling_per_s(kind: str, cap_per_min: float | None) -> float:
    """The most the fleet will spend: the cap when one is set, else the documented budget."""
    return (cap_per_min if cap_per_min is not None else DOCUMENTED_PER_MIN[kind]) / 60.0


def starting(kind: str, cap_per_min: float | None) -> Account:
    """Before any answer: the documented budget (or the cap, if lower)."""
    return Account(rate=min(DOCUMENTED_PER_MIN[kind] / 60.0, ceiling_per_s(kind, cap_per_min)))


def learn(current: Account, seen: Seen, ceiling: float) -> Learned:
    """The account as this answer shows it. `ceiling` (requests/s) bounds the rate."""
    if seen.throttled:
        # No request fits right now; the capacity believed so far may be gone (credit ran out).
        return Learned(Account(current.rate, 0), 0.0)
    if seen.remaining is None or seen.reset is None or seen.remaining < 0 or seen.reset < 0:
        return Learned(current, None)
    remaining = seen.remaining
    capacity = max(current.capacity, remaining + 1)
    if not 200 <= seen.status < 300:
        # An error may have been answered before the request took a token (a 401 takes none):
        # only the tokens-left bound is sure.
        return Learned(Account(current.rate, capacity), float(remaining))
    # The request took a token, so the bucket lacks at least one; a bucket seen at `capacity` lacks
    # (capacity - remaining - 1) more than the whole requests it still reports (the remainder is
    # rounded down). Either way, a lower bound of the true deficit.
    deficit = max(1.0, float(capacity - remaining - 1))
    if seen.reset >= 2:
        rate = deficit / seen.reset  # reset is rounded up: a lower bound of the true rate
    elif remaining >= 1:
        rate = current.rate * GROWTH  # what we took is back within a second, with room to spare
    else:
        rate = max(current.rate, deficit / max(seen.reset, 1.0))
    return Learned(Account(min(ceiling, max(MIN_RATE, rate)), capacity), float(remaining))


def pace(account_rate: float, headroom: float) -> tuple[float, float]:
    """The fleet's bucket for an account refilling at `account_rate`/s: `headroom` of it, with a burst
    of two seconds of that (at least one request)."""
    rate = account_rate * headroom
    return rate, max(1.0, rate * 2.0)


def kind_of(endpoint: str) -> str:
    """The budget a client endpoint spends: creates have their own, everything else is a read."""
    return "create" if endpoint == "create" else "read"


def parse_seen(status: int, remaining: str | None, reset: str | None) -> Seen:
    """A `Seen` from raw header values; an unreadable or negative value is treated as absent."""
    left = _number(remaining)
    return Seen(status, None if left is None else int(left), _number(reset))


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        return None
    return value
