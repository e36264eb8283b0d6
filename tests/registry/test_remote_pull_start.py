"""``mbom pull`` against a server starts light: no database stack, no httpx.

Its fixed cost is paid on every pull (about 0.5 s of imports once was SQLAlchemy,
pulled in only to check a database URL a client of a server never uses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PULL = """
import json, sys
from pathlib import Path
from registry.cli.context import CliContext
from registry.errors import ConfigurationError
registry = CliContext(server="http://127.0.0.1:9", token="t").registry()
try:
    registry.pull("m@1", Path(sys.argv[1]))
except ConfigurationError as error:
    refused = str(error)
heavy = ("sqlalchemy", "httpx", "registry.service", "registry.db", "numpy")
print(json.dumps({"refused": refused, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_a_remote_pull_imports_no_database_stack_nor_httpx(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MBOM_DATABASE_URL": "not a url",  # never read by a client of a server
    }
    done = subprocess.run(
        [sys.executable, "-c", PULL, str(tmp_path / "dest")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    answer = json.loads(done.stdout)
    assert "cannot reach the mbom server at http://127.0.0.1:9" in answer["refused"]
    assert answer["loaded"] == []
    assert not (tmp_path / "dest").exists()
