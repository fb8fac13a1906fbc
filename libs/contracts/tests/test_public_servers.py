"""A server's driver settings are JSON that survives being stored and answered back."""

import pytest
from pydantic import ValidationError

from contracts.public.servers import ServerCreate, ServerUpdate

BASE = {"name": "de-1", "location": "de-fra", "backend": "sandbox", "capacity": 10}


@pytest.mark.parametrize("settings", [
    {"limit": 2**63},  # the answer's JSON encoder refuses integers past 64 bits
    {"limit": -(2**63) - 1},
    {"limit": 3.0394553552016002e+246},  # JSONB gives it back as a 247-digit integer
    {"nested": [[[[[[[[[["too deep"]]]]]]]]]]},
])
def test_settings_that_could_not_be_answered_back_are_refused(settings):
    with pytest.raises(ValidationError):
        ServerCreate.model_validate({**BASE, "settings": settings})
    with pytest.raises(ValidationError):
        ServerUpdate.model_validate({"settings": settings})


def test_ordinary_settings_are_kept_as_sent():
    settings = {"proxies": ["vless"], "port": 443, "ratio": 1.5, "tls": True, "note": None,
                "limit": 2**63 - 1}
    assert ServerCreate.model_validate({**BASE, "settings": settings}).settings == settings
    assert ServerUpdate.model_validate({"settings": settings}).settings == settings
