"""Credentials: which presented keys authenticate, as whom, and which are refused."""

from __future__ import annotations

import pytest

from services.common.auth import ADMIN, OPERATOR, authenticate
from services.common.config import ApiKey
from services.common.errors import Unauthenticated

KEYS = {"s3cret-operator": ApiKey("s3cret-operator", frozenset({OPERATOR}), "ops-team"),
        "s3cret-admin": ApiKey("s3cret-admin", frozenset({ADMIN}), "root")}


@pytest.mark.parametrize("metadata", [
    (("authorization", "Bearer s3cret-operator"),),
    (("authorization", "bearer  s3cret-operator "),),
    (("x-api-key", "s3cret-operator"),),
])
def test_a_configured_key_acts_as_its_subject_with_its_roles(metadata):
    principal = authenticate(metadata, KEYS, allow_anonymous=False)
    assert principal.subject == "ops-team" and principal.roles == frozenset({OPERATOR})


@pytest.mark.parametrize("presented", ["s3cret", "s3cret-operato", "s3cret-operator2",
                                       "S3CRET-OPERATOR", "ops-team", "operator"])
def test_prefixes_extensions_and_subjects_of_keys_are_refused(presented):
    with pytest.raises(Unauthenticated, match="unknown credential"):
        authenticate((("authorization", f"Bearer {presented}"),), KEYS, allow_anonymous=False)


def test_a_new_key_set_takes_effect_at_once():
    authenticate((("x-api-key", "s3cret-admin"),), KEYS, allow_anonymous=False)
    rotated = {"fresh": ApiKey("fresh", frozenset({ADMIN}), "root")}
    assert authenticate((("x-api-key", "fresh"),), rotated, False).subject == "root"
    with pytest.raises(Unauthenticated):
        authenticate((("x-api-key", "s3cret-admin"),), rotated, allow_anonymous=False)
