"""The layout is the architecture: pairstream/ imports no Bytewax, QuestDB client or network code;
connectors/ never imports flows/; only public names cross packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pairstream", "connectors", "flows")
# what each package may import from the others (arrows only point down)
ALLOWED = {"pairstream": set(), "connectors": {"pairstream"}, "flows": {"pairstream", "connectors"}}

_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"bytewax", "questdb", "websockets"}:
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import importlib, pkgutil, pairstream
for m in pkgutil.iter_modules(pairstream.__path__):
    importlib.import_module(f"pairstream.{m.name}")
import pairstream.estimators, pairstream.ohlcv, pairstream.signals, pairstream.rules
try:
    import bytewax
except ImportError:
    print("ok")
"""

# statsmodels is test-only (references); pandas is loaded by the first columnar flush. (scipy is
# not: numba's compiled np.linalg, in the ADF, calls LAPACK through scipy.)
_RUNTIME = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "statsmodels":
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import flows.pairs, flows.cli, flows.backtest_cli, connectors.export, connectors.binance
from flows.startup import warm_kernels
warm_kernels()
print(sorted({"pandas", "pyarrow"} & set(sys.modules)))
"""


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``, relative imports resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def test_domain_library_imports_without_bytewax_questdb_or_websockets() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKER], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_flow_needs_no_statsmodels_and_no_pandas_at_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _RUNTIME], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_imports_point_down_and_use_public_names_only() -> None:
    wrong = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            for line, module, names in _imports(path):
                top = module.split(".")[0]
                if top not in PACKAGES or top == pkg:
                    continue
                where = f"{path.relative_to(REPO)}:{line}"
                if top not in ALLOWED[pkg]:
                    wrong.append(f"{where}: {pkg}/ imports {module}")
                wrong += [f"{where}: private name {module}.{n}" for n in names if n.startswith("_")]
    assert not wrong, "\n".join(wrong)
