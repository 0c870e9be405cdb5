#!/usr/bin/env bash
# Fails when a target's sources import a module that Package.swift does not declare as that target's dependency
# (a module reached only transitively builds today and breaks when the other package drops it).
# Usage: scripts/check-imports.sh   (from anywhere; reads `swift package dump-package`)
set -euo pipefail
cd "$(dirname "$0")/.."
swift package dump-package 2>/dev/null | python3 -c '
import json, os, re, sys

package = json.load(sys.stdin)
# Modules of the toolchain and the OS: never declared in Package.swift.
system = {"Foundation", "FoundationEssentials", "FoundationNetworking", "Dispatch", "Glibc", "Musl", "Darwin",
          "Synchronization", "XCTest", "Testing", "_Concurrency", "Swift", "os"}
# A product whose modules are not named after it: product -> the modules it makes importable.
product_modules = {"Metrics": {"Metrics", "CoreMetrics"}}
importing = re.compile(r"^\s*(?:@[A-Za-z_]+(?:\([^)]*\))?\s+)*import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?([A-Za-z_][A-Za-z0-9_]*)")

failures = []
for target in package["targets"]:
    if target["type"] == "system":
        continue
    name = target["name"]
    declared = set()
    for dependency in target.get("dependencies", []):
        for kind, value in dependency.items():
            declared.add(value[0])
            if kind == "product":
                declared |= product_modules.get(value[0], set())
    default = "Tests" if target["type"] == "test" else "Sources"
    path = target.get("path") or os.path.join(default, name)
    excluded = [os.path.join(path, e) for e in target.get("exclude", [])]
    for root, _, files in os.walk(path):
        if any(root == e or root.startswith(e + os.sep) for e in excluded):
            continue
        for file in sorted(files):
            if not file.endswith(".swift"):
                continue
            with open(os.path.join(root, file), encoding="utf-8") as source:
                for number, line in enumerate(source, 1):
                    match = importing.match(line)
                    if not match:
                        continue
                    module = match.group(1)
                    if module != name and module not in declared and module not in system:
                        failures.append(f"{os.path.join(root, file)}:{number}: target {name} imports {module}, not among its dependencies in Package.swift")

for failure in failures:
    print(failure)
if failures:
    print(f"check-imports: {len(failures)} undeclared import(s); add them to the target in Package.swift", file=sys.stderr)
    sys.exit(1)
print("check-imports: every import is a declared dependency")
'
