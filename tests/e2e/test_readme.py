"""The README contract: .ci/run runs exactly the README's setup and test commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_setup_run_and_test():
    setup, run, test = readme_commands()
    assert setup == "./setup.sh"
    assert run == ".venv/bin/harness run"
    assert "pytest" in test and "HF_HUB_OFFLINE=1" in test


def test_ci_runs_exactly_the_readme_setup_and_test_commands():
    setup, _, test = readme_commands()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == [setup, test]
