"""`.env.example` documents every variable the settings read, and nothing else."""

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
READ = re.compile(r'\benv_(?:str|secret|bool|int|float|list|choice)\(\s*"([A-Z0-9_]+)"')
DOCUMENTED = re.compile(r"^([A-Z0-9_]+)=", re.MULTILINE)


def test_env_example_matches_the_settings():
    read = set()
    for settings_file in ("settings.py", "ci_settings.py"):
        read |= set(READ.findall((BASE_DIR / "apm_platform" / settings_file).read_text()))
    documented = set(DOCUMENTED.findall((BASE_DIR / ".env.example").read_text()))

    assert read - documented == set(), "read by settings but not documented"
    assert documented - read == set(), "documented but never read"
