"""Print the per-module table of a mutation run from mutmut's result files.

mutmut 3.8.1 keeps one `mutants/<source path>.meta` JSON file per mutated module; its
`exit_code_by_key` maps every mutant to the exit code of the test run against it (None: not
run). The codes mean what `mutmut.stats.status_by_exit_code` says; they are copied here so the
table needs nothing but the files.

Run: `python scripts/mutation_table.py [--survivors] [module glob ...]` from the project root.
The score counts killed and timed-out mutants as caught (a timeout is a mutant that hangs the
code, which a user would notice); "no tests" (no selected test runs the function) counts as missed.
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
    header = f"| {'module':<40} | mutants | killed | survived | timeout | no tests | score |"
    lines = [header, "|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|"]
    total: Counter[str] = Counter()

    def row(name: str, counts: Counter[str]) -> str:
        count = sum(counts.values())
        caught = sum(counts[s] for s in CAUGHT)
        score = f"{100 * caught / count:.1f} %" if count else "-"
        return (f"| {name:<40} | {count:>7} | {counts['killed']:>6} | {counts['survived']:>8} | "
                f"{counts['timeout']:>7} | {counts['no tests']:>8} | {score:>7} |")

    for module, statuses in sorted(results.items()):
        counts = Counter(statuses.values())
        total.update(counts)
        lines.append(row(module, counts))
    lines.append(row("**total**", total))
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="module globs, e.g. 'kimi_tray.kimi.*'")
    parser.add_argument("--survivors", action="store_true", help="also list the mutants not caught")
    args = parser.parse_args(argv)
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
