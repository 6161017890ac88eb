"""The test suite's time as CI sees it: pytest's own seconds for `make test` (the README's
test command) in a fresh clone of each commit, with ../shared beside it as in CI. Each
clone is set up first (`make setup`, not timed); within each repeat the commits run in
turn, so a slow spell of the machine falls on all of them; medians over --repeats.

    python bench/test_suite.py --commits=0e33fec,HEAD [--repeats=1]

Writes bench/results/test_suite.md.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, machine_line

SUMMARY = re.compile(r"^(?P<counts>\d+ passed.*) in (?P<seconds>[\d.]+)s", re.MULTILINE)


def clone(commit: str, folder: Path) -> str:
    """A set-up clone of `commit` in folder/main; returns the commit's short hash."""
    main = folder / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(main)], check=True)
    subprocess.run(["git", "-C", str(main), "checkout", "-q", commit], check=True)
    (folder / "shared").symlink_to(ROOT.parent / "shared")
    subprocess.run(["make", "setup"], cwd=main, check=True, capture_output=True)
    return subprocess.run(
        ["git", "-C", str(main), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def suite_seconds(main: Path) -> tuple[float, str]:
    """(pytest's seconds, its counts line) of one `make test` in the clone `main`."""
    result = subprocess.run(["make", "test"], cwd=main, capture_output=True, text=True)
    found = SUMMARY.search(result.stdout)
    if result.returncode != 0 or not found:
        sys.exit(f"make test failed in {main}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return float(found["seconds"]), found["counts"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", default="HEAD")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    commits = args.commits.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        clones = {}
        for index, commit in enumerate(commits):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            clones[commit] = (clone(commit, folder), folder / "main")
        seconds = {commit: [] for commit in commits}
        counts = {}
        for repeat in range(args.repeats):
            for commit, (short, main) in clones.items():
                took, counts[commit] = suite_seconds(main)
                seconds[commit].append(took)
                print(f"repeat {repeat}: {short} {took:.1f} s ({counts[commit]})", flush=True)
    lines = [
        "# The test suite's time (`make test` in a fresh clone, pytest's seconds)",
        "",
        machine_line(),
        f"- `python bench/test_suite.py --commits={args.commits} --repeats={args.repeats}`",
        "- target (issue 21): at most 480 s of pytest on this 2-core machine",
        "",
        "| commit | pytest seconds (median) | each repeat | tests |",
        "|---|---|---|---|",
    ]
    for commit, (short, _) in clones.items():
        runs = ", ".join(f"{s:.1f}" for s in seconds[commit])
        median = statistics.median(seconds[commit])
        name = short if commit.startswith(short) else f"{short} (`{commit}`)"
        lines.append(f"| {name} | {median:.1f} | {runs} | {counts[commit]} |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "test_suite.md").write_text(table)


if __name__ == "__main__":
    main()
