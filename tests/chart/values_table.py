"""The values table of helm/zambda-guard/README.md, generated from the `# --`
comments in values.yaml (helm-docs style), so the two cannot drift apart.

    python3 tests/chart/values_table.py          # rewrite the README's table
    python3 tests/chart/values_table.py --check  # exit 1 if it is out of date

test_docs.py runs the check. A key documented with `# --` gets a row; a map
without its own comment is described through its keys.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

CHART_DIR = Path(__file__).resolve().parent.parent.parent / "helm" / "zambda-guard"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
TYPE = re.compile(r"^\((?P<type>[^)]+)\)\s*")
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted path, description) for every key preceded by a `# --` comment."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            comment = None if stripped else comment
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if comment is not None:
            found.append((".".join(k for _, k in stack), " ".join(comment)))
        comment = None
    return found


def lookup(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def default_cell(value) -> str:
    if value is None:
        return "`null`"
    rendered = json.dumps(value, separators=(", ", ": "))
    if len(rendered) > 60 or "\n" in rendered:
        return "see [values.yaml](values.yaml)"
    return f"`{rendered}`"


def type_cell(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "bool", int: "int", float: "number",
            type(None): "any"}[type(value)]


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, description in documented_keys(values_text):
        value = lookup(values, path)
        declared = TYPE.match(description)  # helm-docs style: "# -- (int) ..."
        kind = declared["type"] if declared else type_cell(value)
        description = description[declared.end():] if declared else description
        description = description.replace("|", "\\|")
        rows.append(f"| `{path}` | {kind} | {default_cell(value)} | {description} |")
    return "\n".join(rows)


def readme_with_table(readme: str, values_text: str) -> str:
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{table(values_text)}\n{END}{after}"


def main() -> int:
    readme_path = CHART_DIR / "README.md"
    readme = readme_path.read_text()
    current = readme_with_table(readme, (CHART_DIR / "values.yaml").read_text())
    if "--check" in sys.argv[1:]:
        if current != readme:
            print("helm/zambda-guard/README.md: the values table is out of date; "
                  "run python3 tests/chart/values_table.py", file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
