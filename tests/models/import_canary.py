"""A module whose import leaves a mark: tests use it to prove that a disallowed target is
refused before anything is imported."""

import os

os.environ["EXPORTQ_TEST_CANARY_IMPORTED"] = "1"


def factory() -> None:
    raise AssertionError("the canary factory must never be called")
