#!/usr/bin/env python3
"""Checks that Package.swift declares exactly what each target imports (issue #24).

For every target: a module its sources import that is not among its dependencies is "undeclared" (the build may
still work through another target's dependency, until it does not); a dependency no source imports is "unused"
(it costs build time and hides the architecture). Either fails. The compiler's
`--explicit-target-dependency-import-check` covers the first for source targets; this covers test targets too,
and the second. Usage: python3 scripts/check-imports.py (from the repository root).
"""
import glob
import re
import sys

SYSTEM = {"Foundation", "FoundationEssentials", "FoundationNetworking", "Glibc", "Musl", "Darwin", "Synchronization",
          "Dispatch", "Testing", "XCTest", "_Concurrency", "CTrickleRelayBuildInfo"}
IMPORT = re.compile(r"^\s*(?:@testable |@_spi\(\w+\) )?(?:public |internal |package |private |fileprivate )?"
                    r"import (?:struct |class |enum |func |protocol |typealias )?(\w+)")


def main() -> int:
    package = open("Package.swift").read()
    targets = {}
    for match in re.finditer(r'\.(?:target|testTarget|executableTarget)\(\s*name: "([^"]+)",\s*dependencies: \[(.*?)\]'
                             r'\s*(?:,\s*path: "([^"]+)")?', package, re.S):
        name, dependencies, path = match.groups()
        declared = set(re.findall(r'\.product\(name: "([^"]+)"', dependencies))
        declared |= set(re.findall(r'^\s*"([^"]+)",', dependencies, re.M))
        targets[name] = (declared, path or ("Tests/" if name.endswith("Tests") else "Sources/") + name)
    # Dependencies added conditionally: `someTarget.dependencies.append(.product(name: "X", …))` after a lookup by name.
    for name, product in re.findall(r'targets\.first\(where: \{ \$0\.name == "([^"]+)" \}\).*?dependencies\.append\('
                                    r'\.product\(name: "([^"]+)"', package, re.S):
        targets[name][0].add(product)
    failures = []
    for name, (declared, path) in sorted(targets.items()):
        imported = set()
        for file in glob.glob(path + "/**/*.swift", recursive=True):
            for line in open(file, encoding="utf-8"):
                match = IMPORT.match(line)
                if match:
                    imported.add(match.group(1))
        imported -= SYSTEM
        for module in sorted(imported - declared):
            failures.append(f"{name}: imports {module} without declaring it")
        for module in sorted(declared - imported):
            failures.append(f"{name}: declares {module} and never imports it")
    for failure in failures:
        print(f"check-imports: {failure}", file=sys.stderr)
    print(f"check-imports: {len(targets)} targets, {'OK' if not failures else f'{len(failures)} problems'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
