"""The deployment files: compose.yaml's two ways to run, and the configuration it mounts."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.config import parse_config, tomllib

ROOT = Path(__file__).parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def test_the_bot_alone_needs_no_profile_and_the_scaled_stack_is_one_profile():
    services = compose()["services"]

    assert "profiles" not in services["storybot"]
    assert services["vllm"]["profiles"] == services["redis"]["profiles"] == ["vllm"]
    depends = services["storybot"]["depends_on"]
    assert depends == {
        "vllm": {"condition": "service_healthy", "required": False},
        "redis": {"condition": "service_healthy", "required": False},
    }


def test_every_service_of_the_stack_has_a_health_check_and_keeps_its_data():
    services = compose()["services"]

    for name in ("vllm", "redis"):
        assert services[name]["healthcheck"]["test"]
    assert "--served-model-name" in services["vllm"]["command"]
    assert any(v.startswith("vllm-models:") for v in services["vllm"]["volumes"])
    assert any(v.startswith("storybot-data:") for v in services["storybot"]["volumes"])
    assert "./deploy:/etc/storybot:ro" in services["storybot"]["volumes"]


def test_the_mounted_configuration_points_at_the_stacks_services():
    data = tomllib.loads((ROOT / "deploy" / "vllm.toml").read_text(encoding="utf-8"))
    config = parse_config(data)
    served = compose()["services"]["vllm"]["command"]

    assert config.model.backend == "openai" and config.remote.server == "vllm"
    assert config.remote.base_url == "http://vllm:8000/v1"
    assert config.remote.model == served[served.index("--served-model-name") + 1]
    assert config.moderation.limits_storage == "redis://redis:6379/0"
