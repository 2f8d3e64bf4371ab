"""Ladder steps as people say them."""

import pytest

from notifications.steps import step_label


@pytest.mark.parametrize(
    ("step", "offset", "told", "gate", "label"),
    [
        ("late-10", 10, ["coordinator"], False, "10 working days late: coordinator told"),
        ("late-1", 1, [], False, "1 working day late"),
        ("remind-2", -2, ["owner"], False, "2 working days before due: owner reminded"),
        ("due", 0, ["owner", "pilot-lead"], False, "on the due day: owner and pilot lead told"),
        ("due", 0, ["owner", "pilot-lead"], True, "on the deadline: approvers and pilot lead told"),
        ("remind-3", -3, ["owner"], True, "3 working days before the deadline: approvers reminded"),
        (
            "expired",
            0,
            ["owner", "case-owner", "coordinator", "coordinator"],
            True,
            "deadline passed: approvers, case owner and coordinator told",
        ),
    ],
)
def test_a_step_says_when_it_falls_and_whom_it_tells(
    step: str, offset: int, told: list[str], gate: bool, label: str
) -> None:
    assert step_label(step, offset, told, gate=gate) == label
