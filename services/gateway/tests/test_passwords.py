"""The rules a new password must pass: length, not a common one, not the account's email."""

from __future__ import annotations

import pytest

from gateway.security import common_passwords, password_problem
from gateway.service import check_new_password
from runtime.errors import ValidationFailed

EMAIL = "Alice.Smith@example.com"


@pytest.mark.parametrize("password", ["password1234", "qwertyuiop", "1234567890",
                                      "PASSWORD1234", "Pass Word 1234", "iloveyou12"])
def test_common_passwords_are_refused(password):
    assert password_problem(password, EMAIL)[0] == "common"


@pytest.mark.parametrize("password", ["alice.smith@example.com", "ALICE.SMITH@EXAMPLE.COM",
                                      " alice.smith ", "Alice.Smith"])
def test_the_email_or_its_name_part_is_refused(password):
    assert password_problem(password, EMAIL)[0] == "email"


def test_short_passwords_are_refused_and_good_ones_pass():
    assert password_problem("short 1", EMAIL)[0] == "too_short"
    # the passwords the e2e suite, the bench and the docs use
    for ok in ["correct horse 1", "admin password 1", "bench password 1", "buyer password 1",
               "a brand new password"]:
        assert password_problem(ok, EMAIL) is None, ok


def test_the_list_is_the_well_kept_one():
    common = common_passwords()
    assert len(common) >= 10_000 and {"password", "123456", "qwerty"} <= common


def test_refusal_is_a_validation_error_saying_why():
    with pytest.raises(ValidationFailed) as exc:
        check_new_password("qwertyuiop", EMAIL, field="new_password")
    assert exc.value.status == 400 and exc.value.code == "VALIDATION_ERROR"
    assert exc.value.details == {"field": "new_password", "reason": "common"}
    assert "common" in exc.value.message
