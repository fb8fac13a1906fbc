"""The ticket state machine (product spec): allowed and refused transitions."""

from __future__ import annotations

import pytest

from runtime.errors import IllegalTransition
from tickets.service import status_after_message


@pytest.mark.parametrize("author,before,after", [
    ("USER", "OPEN", "OPEN"),
    ("USER", "PENDING_USER", "PENDING_SUPPORT"),
    ("USER", "PENDING_SUPPORT", "PENDING_SUPPORT"),
    ("USER", "CLOSED", "PENDING_SUPPORT"),
    ("SUPPORT", "OPEN", "PENDING_USER"),
    ("SUPPORT", "PENDING_SUPPORT", "PENDING_USER"),
    ("SUPPORT", "PENDING_USER", "PENDING_USER"),
])
def test_message_moves_the_ticket(author, before, after):
    assert status_after_message(author, before) == after


def test_support_cannot_answer_a_closed_ticket():
    with pytest.raises(IllegalTransition):
        status_after_message("SUPPORT", "CLOSED")
