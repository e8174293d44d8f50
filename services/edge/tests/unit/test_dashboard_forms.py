"""Dashboard forms decode into the account API's own request types, with its limits."""

from __future__ import annotations

import grpc
import msgspec
import pytest

from orqen_common.errors import OrqenError, invalid_request, not_found
from orqen_edge.account.keys import KeyCreation, ProviderCredential
from orqen_edge.account.routing import PreferencesUpdate
from orqen_edge.dashboard.forms import form_struct, refusal
from orqen_edge.dashboard.pages import routing


def test_form_text_becomes_the_account_apis_numbers_and_unsent_fields_stay_unset() -> None:
    update = form_struct({"k_floor": "2", "ab_control_share": "0.5", "fallback_models": ["a", "b"]}, PreferencesUpdate)
    assert (update.k_floor, update.ab_control_share, update.fallback_models) == (2, 0.5, ["a", "b"])
    assert form_struct({}, PreferencesUpdate) == PreferencesUpdate()


def test_the_account_apis_limits_apply_to_forms_and_name_the_field() -> None:
    with pytest.raises(OrqenError) as negative:
        form_struct({"k_floor": "-1"}, PreferencesUpdate)
    assert negative.value.http_status == 400 and "k_floor" in negative.value.message
    with pytest.raises(OrqenError) as not_a_number:
        form_struct({"k_cap": "many"}, PreferencesUpdate)
    assert "k_cap" in not_a_number.value.message
    with pytest.raises(OrqenError) as too_long:
        form_struct({"name": "x" * 101}, KeyCreation)
    assert "name" in too_long.value.message
    with pytest.raises(OrqenError) as unknown:
        form_struct({"provider": "openai", "colour": "red"}, ProviderCredential)
    assert "colour" in unknown.value.message


def test_only_refusals_of_what_was_asked_are_shown_in_the_form() -> None:
    assert refusal(invalid_request("Invalid k_cap 1.")) == "Invalid k_cap 1."
    assert refusal(not_found("No such key.")) is None
    assert refusal(OrqenError.of(grpc.StatusCode.UNAVAILABLE, "accounting is down")) is None


def test_the_routing_form_sends_the_fallback_chain_as_a_list_and_blank_fields_are_kept() -> None:
    fields = {"k_cap": "12", "fallback_models": "gpt-4o-mini,\n claude-sonnet-4-6 ,", "csrf": "x"}
    update = form_struct(routing._preferences_update(fields), PreferencesUpdate)
    assert update.k_cap == 12 and update.fallback_models == ["gpt-4o-mini", "claude-sonnet-4-6"]
    assert update.mode is msgspec.UNSET and update.k_floor is msgspec.UNSET
    assert form_struct(routing._preferences_update({}), PreferencesUpdate).fallback_models == []


def test_a_refusal_marks_the_field_its_message_names_first() -> None:
    assert routing._field_named("Invalid k_cap 1: 0 (no cap) or at least k_floor (3).") == "k_cap"
    assert routing._field_named("Invalid ab_control_share 2.0: it must be between 0 and 1.") == "ab_control_share"
    assert routing._field_named("Something else.") is None
