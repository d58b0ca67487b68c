"""The settings module and .env.example agree, and the example is safe to copy."""

import os
import re
import subprocess
import sys

from tests.helpers import BASE_DIR

SETTINGS = (BASE_DIR / "config" / "settings.py").read_text()
EXAMPLE = (BASE_DIR / ".env.example").read_text()


def test_every_variable_the_settings_read_is_in_the_example():
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', SETTINGS))
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", EXAMPLE, re.MULTILINE))

    assert read, "no env() calls found"
    assert read - listed == set()
    assert listed - read == set()


def test_the_example_as_an_environment_runs_with_defaults():
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", EXAMPLE, re.MULTILINE))
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | example
    env.pop("DATABASE_URL", None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
