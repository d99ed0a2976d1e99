"""Password hashing (argon2id, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from tessera.errors import Detail, ValidationFailed
from tessera.settings import get_settings

# Hashing is CPU-bound C code that releases the GIL: a small pool keeps the event loop free
# without letting a login burst oversubscribe the cores. One thread per core: more would not
# verify faster, and each keeps its argon2 memory (19 MiB) in its malloc arena (`make bench`
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


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_pool, hasher().hash, password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_pool, _verify, stored_hash, password)


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
