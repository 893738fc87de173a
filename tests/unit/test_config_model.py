"""The YAML's allowed keys come from the dataclasses, and the defaults from pipectl.defaults."""

from __future__ import annotations

from dataclasses import asdict

from pipectl import defaults
from pipectl.channels.resolve import is_secret_key
from pipectl.config.channels import CHANNEL_KEYS, INBOX_KEYS
from pipectl.config.model import ACTION_TYPES, Account, Limits, Pipeline, Retry, Stage, yaml_keys
from pipectl.config.pipelines import ACTION_READERS, EMAIL_KEYS, SMS_KEYS
from pipectl.config.windows import WINDOW_KEYS


def test_each_section_allows_its_dataclass_fields_in_order_and_never_line():
    assert yaml_keys(Account) == (
        "key", "name", "timezone", "country", "limits", "channels", "send_window",
    )  # fmt: skip
    assert yaml_keys(Limits) == ("active_leads", "concurrency", "rates")
    assert yaml_keys(Pipeline) == (
        "key", "account", "name", "on_reply", "on_failure", "send_window", "stages",
    )  # fmt: skip
    assert yaml_keys(Stage) == ("key", "name", "outcome", "actions", "on_failure")
    assert WINDOW_KEYS == ("days", "hours", "timezone")


def test_template_keys_come_with_their_file_twins_then_the_send_options():
    assert EMAIL_KEYS == (
        "subject", "body", "body_file", "html", "html_file", "thread", "retry", "send_window",
    )  # fmt: skip
    assert SMS_KEYS == ("body", "body_file", "retry", "send_window")


def test_channel_settings_are_written_as_the_yaml_spells_them():
    assert "from" in CHANNEL_KEYS["email"] and "sender" not in CHANNEL_KEYS["email"]
    assert CHANNEL_KEYS["sms"][-1] == "inbound"
    assert INBOX_KEYS == ("host", "port", "security", "username", "password", "folders")


def test_every_action_type_has_a_reader():
    assert tuple(ACTION_READERS) == ACTION_TYPES


def test_defaults_are_the_ones_the_dataclasses_use():
    assert Limits().concurrency == defaults.CONCURRENCY
    assert asdict(Retry()) == defaults.RETRY


def test_the_secret_settings_of_every_channel_are_password_and_auth_token():
    keys = {*CHANNEL_KEYS["email"], *CHANNEL_KEYS["sms"], *INBOX_KEYS}
    assert {k for k in keys if is_secret_key(k)} == {"password", "auth_token"}
