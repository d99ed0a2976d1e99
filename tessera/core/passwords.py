"""Password hashing (argon2id, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from tessera.core.errors import Detail, ValidationFailed
from tessera.core.settings import get_settings


def _libc(name: str):
    """A glibc function, or None on another C library or system."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


# Each hash takes 19 MiB and frees it after. glibc gives each thread a heap of its own, which
# keeps so large a freed block for the thread's next hash and is never trimmed on request: the
# two hashing threads held ~40 MB for good after a sign-in burst (`make bench`). With one heap
# for the process (set before the pool's threads exist), `_IdleTrim` can give the memory back
# once a burst is over; within a burst the blocks are reused (about 240 of a hash's 4,864 pages
# fault in again, ~1 % of its time).
_M_ARENA_MAX = -8  # glibc's malloc.h
if mallopt := _libc("mallopt"):
    mallopt(_M_ARENA_MAX, 1)

# Hashing is CPU-bound C code that releases the GIL: a small pool keeps the event loop free
# without letting a login burst oversubscribe the cores. One thread per core: more would not
# verify faster, and each keeps its argon2 memory (19 MiB) while it hashes (`make bench`
# measured 4 threads on 2 cores at 230 MB RSS after the login run).
_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="argon2")
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])
SPECIALS = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ")


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    s = get_settings()
    return PasswordHasher(
        time_cost=s.argon2_time_cost,
        memory_cost=s.argon2_memory_kib,
        parallelism=s.argon2_parallelism,
    )


class _IdleTrim:
    """Runs the hashes on the pool, and once hashing has been idle a moment asks glibc to give
    back the memory they freed (`malloc_trim`): with other allocations above them in the heap,
    the freed blocks do not go back on their own."""

    IDLE_S = 1.0

    def __init__(self, trim) -> None:
        self._trim = trim
        self._running = 0
        self._finished = 0

    async def run(self, function, *args):
        loop = asyncio.get_running_loop()
        self._running += 1
        try:
            return await loop.run_in_executor(_pool, function, *args)
        finally:
            self._running -= 1
            self._finished += 1
            if self._running == 0 and self._trim is not None:
                loop.call_later(self.IDLE_S, self._trim_if_idle, self._finished)

    def _trim_if_idle(self, finished: int) -> None:
        # A hash that ended since scheduled a call of its own, which comes later.
        if self._running == 0 and self._finished == finished:
            self._trim(0)


_hashing = _IdleTrim(_libc("malloc_trim"))


async def hash_password(password: str) -> str:
    return await _hashing.run(hasher().hash, password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str, password: str) -> bool:
    return await _hashing.run(_verify, stored_hash, password)


# Verified against when the account does not exist, so both answers cost the same time.
_DUMMY_HASH: str | None = None


async def verify_dummy(password: str) -> None:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = await hash_password("tessera-timing-equaliser")
    await verify_password(_DUMMY_HASH, password)


def needs_rehash(stored_hash: str) -> bool:
    return hasher().check_needs_rehash(stored_hash)


@dataclass(frozen=True)
class Assessment:
    valid: bool
    score: int
    problems: list[tuple[str, str]]  # (code, message)
    suggestions: list[str]


def assess(password: str, *, email: str | None = None) -> Assessment:
    """Check the policy (length, character classes, not common, not the email) and score it."""
    min_length = get_settings().password_min_length
    problems: list[tuple[str, str]] = []
    if len(password) < min_length:
        problems.append(("TOO_SHORT", f"Use at least {min_length} characters."))
    if not any(c.islower() for c in password):
        problems.append(("MISSING_LOWERCASE", "Add a lowercase letter."))
    if not any(c.isupper() for c in password):
        problems.append(("MISSING_UPPERCASE", "Add an uppercase letter."))
    if not any(c.isdigit() for c in password):
        problems.append(("MISSING_DIGIT", "Add a digit."))
    if not any(c in SPECIALS for c in password):
        problems.append(("MISSING_SPECIAL", "Add a special character such as ! or #."))
    if password.lower() in _COMMON:
        problems.append(("COMMON_PASSWORD", "This password is among the most common ones."))
    inputs: list[str] = []
    if email:
        local = email.split("@")[0].lower()
        inputs = [email.lower(), local]
        if len(local) >= 3 and local in password.lower():
            problems.append(("CONTAINS_EMAIL", "Do not include your email address."))
    result = zxcvbn(password[:72], user_inputs=inputs)  # zxcvbn refuses longer input
    feedback = result["feedback"]
    suggestions = [m for _, m in problems] + list(feedback.get("suggestions", []))
    if feedback.get("warning"):
        suggestions.append(feedback["warning"])
    return Assessment(not problems, int(result["score"]), problems, suggestions)


def enforce_policy(password: str, *, email: str | None) -> None:
    """422 with one detail per broken rule."""
    assessment = assess(password, email=email)
    if not assessment.valid:
        raise ValidationFailed(
            "The password does not meet the policy.",
            [Detail("password", code, message) for code, message in assessment.problems],
        )
