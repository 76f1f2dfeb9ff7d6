"""Config validation: defaults, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from stream.config import DEFAULT_SPAN_S, ConfigError, load_config


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_file_loads_with_training_span():
    """configs/default.yaml is valid and its span matches 256 frames at 30 fps."""
    cfg = load_config()
    assert cfg.model.name == "facebook/timesformer-base-finetuned-k400"
    assert cfg.window.span_s == pytest.approx(DEFAULT_SPAN_S, abs=1e-3)
    assert cfg.window.stride_s == 1.0 and cfg.top_k == 5 and cfg.model.device == "auto"


@pytest.mark.parametrize(
    "text,key,bad",
    [
        ("window:\n  span_s: -2\n", "window.span_s", "-2"),
        ("model:\n  device: gpu9\n", "model.device", "gpu9"),
        ("model:\n  dtype: float64\n", "model.dtype", "float64"),
        ("top_k: 0\n", "top_k", "0"),
        ("sources:\n  - url: rtsp://x\n    max_fps: -1\n", "sources.0.max_fps", "-1"),
        ("server:\n  port: 70000\n", "server.port", "70000"),
    ],
)
def test_bad_values_name_key_and_value(tmp_path, text, key, bad):
    """Each bad value's error names the key path and the value."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert key in str(err.value) and bad in str(err.value)


def test_unknown_keys_are_rejected(tmp_path):
    """A misspelt key is named, nested or not."""
    with pytest.raises(ConfigError, match=r"window\.strid_s: unknown key"):
        load_config(write(tmp_path, "window:\n  strid_s: 1\n"))


def test_exit_threshold_above_enter_is_rejected(tmp_path):
    """Hysteresis needs exit <= enter."""
    with pytest.raises(ConfigError, match="labels.exit"):
        load_config(write(tmp_path, "labels:\n  enter: 0.4\n  exit: 0.6\n"))


def test_flags_override_file(tmp_path):
    """Overrides (what command-line flags pass) win over the file; None leaves the file's value."""
    cfg = load_config(write(tmp_path, "top_k: 3\nwindow:\n  stride_s: 2\n"), {"top_k": 7, "window.stride_s": None})
    assert cfg.top_k == 7 and cfg.window.stride_s == 2


def test_broken_yaml_and_missing_file(tmp_path):
    """Invalid YAML and a missing file give one-line ConfigErrors."""
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_errors_never_show_a_password_or_the_token():
    """A bad value that holds a camera password is shown masked; a bad token is not shown at all."""
    from stream.config import validate_config

    with pytest.raises(ConfigError) as err:
        validate_config({"sources": ["rtsp://admin:Pw9'x@cam.example/x"]})
    assert "sources.0" in str(err.value) and "Pw9" not in str(err.value) and "admin:***@" in str(err.value)
    for token in ("short", 12345678):
        with pytest.raises(ConfigError) as err:
            validate_config({"server": {"token": token}})
        assert "server.token" in str(err.value) and str(token) not in str(err.value)
