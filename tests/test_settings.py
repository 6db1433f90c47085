"""Settings: defaults, validation messages, secrets kept out of repr."""

from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert [(x.name, x.url) for x in s.comfyui_servers] == [("server-1", "http://127.0.0.1:8188")]
    assert s.comfyui_max_pending == 1
    assert str(s.workflows_dir) == "workflows" and str(s.data_dir) == "data"
    assert s.discord_token is None and s.dev_guild_id is None


def test_named_servers_with_prefix_and_credentials() -> None:
    s = load_settings({"COMFYUI_URLS": "gpu1=http://alice:s%40cret@10.0.0.5:8188/comfy/, https://host.example"})
    a, b = s.comfyui_servers
    assert (a.name, a.url, a.username, a.password) == ("gpu1", "http://10.0.0.5:8188/comfy", "alice", "s@cret")
    assert (b.name, b.url) == ("server-2", "https://host.example")
    assert "s@cret" not in repr(s) and "10.0.0.5" not in repr(s)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"COMFYUI_URLS": "ftp://x"}, "COMFYUI_URLS"),
        ({"COMFYUI_URLS": "a=http://x,a=http://y"}, "COMFYUI_URLS"),
        ({"COMFYUI_MAX_PENDING": "many"}, "COMFYUI_MAX_PENDING"),
        ({"DEV_GUILD_ID": "abc"}, "DEV_GUILD_ID"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"ALLOW_DMS": "maybe"}, "ALLOW_DMS"),
        ({"JOB_TIMEOUT": "-1"}, "JOB_TIMEOUT"),
        ({"DISCORD_TOKEN": "short"}, "DISCORD_TOKEN"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_tokens_not_in_repr() -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secretsecretsecretsecret"
    s = load_settings({"DISCORD_TOKEN": token, "COMFYUI_TOKEN": "comfy-secret-token"})
    assert s.discord_token == token
    assert token not in repr(s) and "comfy-secret-token" not in repr(s)
