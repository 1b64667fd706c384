"""Command line: ``python -m mollify info | bench | student-edition``.

``info`` prints the versions of mollify and the libraries it runs on, and the devices torch sees —
the first thing to paste into a bug report. ``bench`` measures the performance figures the book
quotes, as ratios taken in one run (see :mod:`mollify.bench`).
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

__all__ = ["main", "info"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info() -> str:
    """Return a report of versions and available devices.

    >>> "torch" in info()
    True
    """
    import torch

    import mollify

    lines = [
        f"mollify     {mollify.__version__}",
        f"python      {platform.python_version()} ({sys.executable})",
        f"torch       {torch.__version__}",
        f"numpy       {_version('numpy')}",
        f"ipywidgets  {_version('ipywidgets')}",
        f"matplotlib  {_version('matplotlib')}",
        f"platform    {platform.platform()}",
        "devices:",
        f"  cpu       {torch.get_num_threads()} threads",
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"  cuda:{i}    {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("  cuda      not available")
    mps = getattr(torch.backends, "mps", None)
    lines.append(f"  mps       {'available' if mps and mps.is_available() else 'not available'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mollify`` and the ``mollify`` console script."""
    parser = argparse.ArgumentParser(prog="python -m mollify", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of mollify, torch, numpy, ipywidgets and devices")
    bench = sub.add_parser("bench", help="measure the performance figures (ratios) of the book")
    bench.add_argument("--quick", action="store_true", help="smaller sizes (under 2 minutes)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--record", metavar="FILE", help="also write them as this device's "
                       "section of a markdown results file, e.g. benchmarks/RESULTS.md")
    student = sub.add_parser("student-edition", help="write the notebooks and the book without "
                             "solutions (answer cells become stubs) into OUTDIR and build it")
    student.add_argument("outdir", metavar="OUTDIR", help="folder to write (empty or absent)")
    student.add_argument("--no-build", action="store_true", help="skip jupyter-book build")
    student.add_argument("--root", help="repository with the book (default: found)")
    student.add_argument("--force", action="store_true", help="overwrite an existing edition")
    student.add_argument("--clear-outputs", action="store_true", help="notebooks without outputs")
    student.add_argument("--repository-url", help="where the student notebooks are published "
                         "(for the book's repository and Colab buttons)")
    student.add_argument("--branch", help="branch of --repository-url")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info())
    elif args.command == "bench":
        from mollify.bench import run

        run(quick=args.quick, device=args.device, json_path=args.json, record_path=args.record)
    elif args.command == "student-edition":
        from mollify.student_edition import make_student_edition

        try:
            print(make_student_edition(
                args.outdir, root=args.root, build=not args.no_build, overwrite=args.force,
                clear_outputs=args.clear_outputs, repository_url=args.repository_url,
                branch=args.branch,
            ))
        except ValueError as exc:  # a non-empty OUTDIR, no book sources, unbalanced markers
            parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
