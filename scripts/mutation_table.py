"""Print the per-module table of a mutation run from mutmut's result files.

mutmut 3.8.1 keeps one `mutants/<source path>.meta` JSON file per mutated module; its
`exit_code_by_key` maps every mutant to the exit code of the test run against it (None: not
run). The codes mean what `mutmut.stats.status_by_exit_code` says; they are copied here so the
table needs nothing but the files.

Run: `python scripts/mutation_table.py [--survivors] [--times] [--kills] [module glob ...]` from the
project root. `--times`: per module, the seconds the checked mutants took (`durations_by_key`) and
the worst case (every mutant survives, so runs all the tests that cover it: the sum of their
durations in `mutmut-stats.json`, setup and teardown not counted). `--kills`: per test, how many
mutants it was the first to fail on (`mutation-kills.tsv`, written by tests/support/mutation.py),
with its duration and how many mutants run it: a slow test that kills nothing, in a run of all
mutants, can leave the mutation selection without lowering the score.
The score counts killed and timed-out mutants as caught (a timeout is a mutant that hangs the
code, which a user would notice), and those `mypy --strict` rejects ("type check": the project's
checks run it, so such a mistake cannot ship; mutmut then runs no test on them); "no tests" (no
selected test runs the function) counts as missed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

STATUS_BY_EXIT_CODE = {
    1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 2: "interrupted",
    None: "not checked", 34: "skipped", 35: "suspicious", 36: "timeout", 37: "type check",
    -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
}
CAUGHT = ("killed", "timeout", "type check", "segfault")


def load(root: Path) -> dict[str, dict[str, str]]:
    """module (dotted) -> mutant name -> status."""
    results: dict[str, dict[str, str]] = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(root / "mutants").with_suffix("").with_suffix("")
        module = ".".join(source.parts).removesuffix(".__init__")
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        # A run limited to some mutants (or stopped early) leaves the others unchecked (None).
        checked = {name: STATUS_BY_EXIT_CODE.get(code, "suspicious")
                   for name, code in codes.items() if code is not None}
        if checked:
            results[module] = checked
    return results


def table(results: dict[str, dict[str, str]]) -> list[str]:
    header = f"| {'module':<40} | mutants | killed | type check | survived | timeout | no tests | score |"
    lines = [header, "|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|"]
    total: Counter[str] = Counter()

    def row(name: str, counts: Counter[str]) -> str:
        count = sum(counts.values())
        caught = sum(counts[s] for s in CAUGHT)
        score = f"{100 * caught / count:.1f} %" if count else "-"
        return (f"| {name:<40} | {count:>7} | {counts['killed']:>6} | {counts['type check']:>10} | "
                f"{counts['survived']:>8} | "
                f"{counts['timeout']:>7} | {counts['no tests']:>8} | {score:>7} |")

    for module, statuses in sorted(results.items()):
        counts = Counter(statuses.values())
        total.update(counts)
        lines.append(row(module, counts))
    lines.append(row("**total**", total))
    return lines


def mangled(mutant: str) -> str:
    return mutant.partition("__mutmut_")[0]


def times(root: Path, modules: list[str]) -> list[str]:
    stats = json.loads((root / "mutants" / "mutmut-stats.json").read_text(encoding="utf-8"))
    duration, covering = stats["duration_by_test"], stats["tests_by_mangled_function_name"]
    rows: dict[str, list[float]] = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name in data["exit_code_by_key"]:
            module = mangled(name).rsplit(".", 1)[0]
            if modules and not any(fnmatch.fnmatch(module, p) for p in modules):
                continue
            row = rows.setdefault(module, [0, 0.0, 0, 0.0])
            row[0] += 1
            row[1] += sum(duration.get(test, 0.0) for test in covering.get(mangled(name), ()))
            if name in data["durations_by_key"]:
                row[2] += 1
                row[3] += data["durations_by_key"][name]
    lines = [f"| {'module':<40} | mutants | worst case s | checked | took s | s/mutant |",
             f"|{'-' * 42}|---------|--------------|---------|--------|----------|"]
    total = [0, 0.0, 0, 0.0]
    for module, row in [*sorted(rows.items()), ("**total**", total)]:
        if module != "**total**":
            total[:] = [a + b for a, b in zip(total, row, strict=True)]
        per = f"{row[3] / row[2]:.2f}" if row[2] else "-"
        lines.append(f"| {module:<40} | {row[0]:>7} | {row[1]:>12.0f} | {row[2]:>7} | {row[3]:>6.0f} "
                     f"| {per:>8} |")
    return lines


def kills(root: Path) -> list[str]:
    stats = json.loads((root / "mutants" / "mutmut-stats.json").read_text(encoding="utf-8"))
    duration, covering = stats["duration_by_test"], stats["tests_by_mangled_function_name"]
    path = root / "mutants" / "mutation-kills.tsv"
    first: dict[str, str] = {}  # a mutant re-checked later: its last killer counts
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else ():
        mutant, test, _when = line.split("\t")
        first[mutant] = test
    killed = Counter(first.values())
    runs: Counter[str] = Counter()
    for meta in (root / "mutants").rglob("*.py.meta"):
        for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
            if code is not None:
                runs.update(covering.get(mangled(name), ()))
    lines = ["| kills | runs | s | test |", "|------:|-----:|--:|------|"]
    for test in sorted(duration, key=lambda t: (-duration[t] * runs[t], t)):
        if runs[test]:
            lines.append(f"| {killed[test]} | {runs[test]} | {duration[test]:.2f} | {test} |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="module globs, e.g. 'kimi_tray.kimi.*'")
    parser.add_argument("--survivors", action="store_true", help="also list the mutants not caught")
    parser.add_argument("--times", action="store_true", help="seconds per module, taken and worst case")
    parser.add_argument("--kills", action="store_true", help="per test: kills, runs, duration")
    args = parser.parse_args(argv)
    if args.times or args.kills:
        print("\n".join(times(Path.cwd(), args.modules) if args.times else kills(Path.cwd())))
        return 0
    results = load(Path.cwd())
    if args.modules:
        results = {m: r for m, r in results.items() if any(fnmatch.fnmatch(m, p) for p in args.modules)}
    if not results:
        print("No mutation results under mutants/: run scripts/mutation first.", file=sys.stderr)
        return 1
    print("\n".join(table(results)))
    if args.survivors:
        for statuses in results.values():
            for name, status in sorted(statuses.items()):
                if status not in CAUGHT:
                    print(f"{status:<12} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
