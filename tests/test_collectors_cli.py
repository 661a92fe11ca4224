"""`thinkmeter collect` configuration: arguments, then THINKMETER_COLLECT_* variables, then a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest

from thinkmeter.cli import main
from thinkmeter.collectors.config import CollectConfig


def test_arguments_override_environment_which_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "collect.json"
    config.write_text(
        json.dumps(
            {
                "gpu": True,
                "interval_s": 2,
                "engines": [
                    "http://127.0.0.1:8000",
                    {"url": "http://10.0.0.7:30000", "engine": "sglang", "model": "m"},
                ],
            }
        )
    )
    from_file = CollectConfig.resolve(config_file=config, environ={})
    assert from_file == CollectConfig(
        gpu=True,
        engines=("http://127.0.0.1:8000", {"url": "http://10.0.0.7:30000", "engine": "sglang", "model": "m"}),
        interval_s=2.0,
    )
    environ = {
        "THINKMETER_COLLECT_GPU": "false",
        "THINKMETER_COLLECT_ENGINES": "http://a:1, http://b:2,",
        "THINKMETER_COLLECT_INTERVAL": "0.5",
    }
    from_env = CollectConfig.resolve(config_file=config, environ=environ)
    assert from_env == CollectConfig(gpu=False, engines=("http://a:1", "http://b:2"), interval_s=0.5)
    from_args = CollectConfig.resolve(
        gpu=True, engines=["http://c:3"], interval_s=10, config_file=config, environ=environ
    )
    assert from_args == CollectConfig(gpu=True, engines=("http://c:3",), interval_s=10.0)
    assert CollectConfig.resolve(environ={}) == CollectConfig(gpu=False, engines=(), interval_s=5.0)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"gpus": true}', "unknown keys \\['gpus'\\]"),
        ('{"engines": "http://a:1"}', "engines must be a list"),
        ('{"interval_s": "soon"}', "interval_s must be a number of seconds"),
        ('{"interval_s": 0}', "must be a positive number of seconds"),
    ],
)
def test_a_bad_config_file_says_what_is_wrong(tmp_path: Path, content: str, error: str) -> None:
    config = tmp_path / "collect.json"
    config.write_text(content)
    with pytest.raises(ValueError, match=error):
        CollectConfig.resolve(config_file=config, environ={})


def test_nothing_to_collect_is_an_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("THINKMETER_COLLECT_GPU", "THINKMETER_COLLECT_ENGINES"):
        monkeypatch.delenv(name, raising=False)
    assert main(["collect"]) == 1
    assert "nothing to collect: pass --gpu and/or --engine URL" in capsys.readouterr().err


def test_a_bad_interval_is_an_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # On the command line it fails parsing (tests/test_cli_options.py); from the environment it is the run's error.
    monkeypatch.setenv("THINKMETER_COLLECT_INTERVAL", "-1")
    assert main(["collect", "--engine", "http://127.0.0.1:8000"]) == 1
    assert "must be a positive number of seconds" in capsys.readouterr().err


def _nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_works(), reason="this machine has an NVIDIA driver")
def test_gpu_only_without_a_driver_exits_after_one_message(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["collect", "--gpu", "--interval", "0.05"]) == 1
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("thinkmeter")]
    assert messages[0].startswith(
        "thinkmeter: GPU collection is off: NVML cannot start (NVML Shared Library Not Found)"
    )
    assert messages[1:] == ["thinkmeter collect: nothing left to collect (see the message above)"]
