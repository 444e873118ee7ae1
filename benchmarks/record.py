"""Run a benchmark and write what it printed into ``docs/results.md``, with the date, the
commit and the hardware, so each figure there says where it came from.

    python benchmarks/record.py NAME [--lines N] -- python benchmarks/gpu.py --full

The benchmark's output streams to the console as it runs; its last ``--lines`` lines (the
headline figures every benchmark prints last) become the section ``NAME`` under
*Recorded runs* in docs/results.md, replacing an earlier section of that name. A
benchmark that fails records nothing (exit code passed on).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results.md"
RECORDED = "## Recorded runs"


def hardware() -> str:
    """CPU count, memory and GPUs of this machine, in one line."""
    parts = [f"{os.cpu_count()} CPUs"]
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        parts.append(f"{pages * size / 2**30:.0f} GiB")
    except (ValueError, OSError):
        pass
    try:
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        names = [line.strip() for line in gpus.stdout.splitlines() if line.strip()]
        parts.append(", ".join(names) if names else "no GPU")
    except (OSError, subprocess.SubprocessError):
        parts.append("no GPU")
    return f"{platform.machine()}, " + ", ".join(parts)


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True)
    return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def section(name: str, command: list[str], lines: list[str]) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(lines).rstrip()
    return (f"### {name}\n\n{when}, commit {commit()}, {hardware()}: `{' '.join(command)}`\n\n"
            f"```\n{body}\n```\n")


def write(name: str, text: str, path: Path = RESULTS) -> None:
    """Put ``text`` as section ``name`` under *Recorded runs* (replacing one of that name)."""
    doc = path.read_text() if path.exists() else "# Results\n"
    if RECORDED not in doc:
        doc = doc.rstrip() + f"\n\n{RECORDED}\n\nWritten by `benchmarks/record.py`.\n"
    head, recorded = doc.split(RECORDED, 1)
    pattern = re.compile(rf"^### {re.escape(name)}\n.*?(?=^### |\Z)", re.S | re.M)
    recorded = pattern.sub("", recorded).rstrip() + "\n\n" + text
    path.write_text(head + RECORDED + recorded)


def main() -> int:
    args = sys.argv[1:]
    if "--" not in args:
        print("usage: record.py NAME [--lines N] -- COMMAND...", file=sys.stderr)
        return 2
    cut = args.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--lines", type=int, default=20, help="how many of the last lines to record")
    options = parser.parse_args(args[:cut])
    command = args[cut + 1 :]
    printed = []
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            printed.append(line.rstrip("\n"))
    if proc.returncode != 0:
        print(f"record.py: {' '.join(command)} exited {proc.returncode}; nothing recorded", file=sys.stderr)
        return proc.returncode
    write(options.name, section(options.name, command, printed[-options.lines :]))
    print(f"recorded in {RESULTS.relative_to(REPO)} under '{options.name}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
