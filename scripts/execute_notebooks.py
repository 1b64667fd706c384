"""Re-execute the book's notebooks in place, storing outputs and widget state.

Usage:  python scripts/execute_notebooks.py [NOTEBOOK ...]   (default: every book/**/*.ipynb)

Run it after changing a chapter or the library, then commit the notebooks: their stored outputs
are what Colab and GitHub show, what the book renders (``execute_notebooks: auto``) and what
nbval compares the cells marked ``# NBVAL_CHECK_OUTPUT`` against. Each notebook runs in its own
folder with the current Python environment's kernel; widget state is saved in the notebook
metadata so the static book shows each widget's first state.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path, timeout: int = 600) -> float:
    """Execute one notebook in place; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    ).execute()
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(
        p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )
    for path in paths:
        print(f"{path}: ", end="", flush=True)
        print(f"{execute(path):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
