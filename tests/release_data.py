"""Where the tests find TSPO's release files (real annotation files and published frame selections, research data
the project does not ship): the folder $HARNESS_SHARED_DATA names (the `tspo-release` folder), else
../shared/data/tspo-release beside the checkout. Tests that need them skip, saying so, where neither exists (CI)."""
import os
from pathlib import Path

RELEASE = Path(os.environ.get("HARNESS_SHARED_DATA")
               or Path(__file__).resolve().parents[2] / "shared" / "data" / "tspo-release")
