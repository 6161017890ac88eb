"""The test suite's time as CI sees it: pytest's own seconds for each of --targets
(`make test`, the README's test command, and `make test-e2e`, the end-to-end tier CI
runs after it) in a fresh clone of each commit, with ../shared beside it as in CI. Each
clone is set up first (`make setup`, not timed); within each repeat the commits run in
turn, so a slow spell of the machine falls on all of them; medians over --repeats.
(Before 2026-12-06 `make test` was the whole suite and there was no `test-e2e`: time
those commits with --targets=test.)

    python bench/test_suite.py --commits=0e33fec,HEAD [--repeats=1] [--targets=test,test-e2e]

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


def suite_seconds(main: Path, target: str) -> tuple[float, str]:
    """(pytest's seconds, its counts line) of one `make <target>` in the clone `main`."""
    result = subprocess.run(["make", target], cwd=main, capture_output=True, text=True)
    found = SUMMARY.search(result.stdout)
    if result.returncode != 0 or not found:
        ending = f"{result.stdout[-3000:]}{result.stderr[-2000:]}"
        sys.exit(f"make {target} failed in {main}:\n{ending}")
    return float(found["seconds"]), found["counts"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", default="HEAD")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--targets", default="test,test-e2e")
    args = parser.parse_args()
    commits, targets = args.commits.split(","), args.targets.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        clones = {}
        for index, commit in enumerate(commits):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            clones[commit] = (clone(commit, folder), folder / "main")
        seconds = {(commit, target): [] for commit in commits for target in targets}
        counts = {}
        for repeat in range(args.repeats):
            for commit, (short, main) in clones.items():
                for target in targets:
                    took, counts[commit, target] = suite_seconds(main, target)
                    seconds[commit, target].append(took)
                    line = f"{short} make {target}: {took:.1f} s ({counts[commit, target]})"
                    print(f"repeat {repeat}: {line}", flush=True)
    lines = [
        "# The test suite's time (make targets in a fresh clone, pytest's seconds)",
        "",
        machine_line(),
        f"- `python bench/test_suite.py --commits={args.commits} --repeats={args.repeats} "
        f"--targets={args.targets}`",
        "- target (issues 21, 34): `make test` at most 480 s of pytest on this 2-core machine",
        "",
        "| commit | target | pytest seconds (median) | each repeat | tests |",
        "|---|---|---|---|---|",
    ]
    for commit, (short, _) in clones.items():
        name = short if commit.startswith(short) else f"{short} (`{commit}`)"
        for target in targets:
            runs = ", ".join(f"{s:.1f}" for s in seconds[commit, target])
            median = statistics.median(seconds[commit, target])
            lines.append(
                f"| {name} | `make {target}` | {median:.1f} | {runs} | {counts[commit, target]} |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "test_suite.md").write_text(table)


if __name__ == "__main__":
    main()
