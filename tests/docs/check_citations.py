#!/usr/bin/env python3
"""Citations of the docs in the sources: every citation of a section of docs/ names a heading or a
bold note that exists in that file, and nothing cites the planning notes, which users do not have.

    check_citations.py SOURCE_DIR     (the citations look like: docs/<file>.md, "Section")

A citation may wrap over comment lines ("Integer\n// stem"); the section matches a heading that
starts with it ("## Integer stem") or a note that does ("- **Integer stem.** ...").
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
PLACES = ["include", "examples", "python", "tests", "docs", "benchmarks", "scripts", "cmake", "README.md", "CMakeLists.txt"]
SUFFIXES = {".hpp", ".cpp", ".h", ".md", ".txt", ".cmake", ".py", ".sh", ".in"}
PLANNING_NOTES = "paper" + "-notes"  # spelled apart so that this file does not cite them

# docs/x.md, optionally in backticks, then one or more quoted sections joined by "and" or ",".
CITATION = re.compile(r'docs/([A-Za-z0-9_-]+\.md)`?,?\s+((?:"[^"]+"(?:\s*(?:,|and)\s*)?)+)')
# A line break inside a comment, with the next line's comment marker.
WRAP = re.compile(r"\s*\n\s*(?:///<|///|//|#|\*)?\s*")


def sections(doc):
    text = doc.read_text(encoding="utf-8")
    heads = [m.group(1).strip().lower() for m in re.finditer(r"^#+\s+(.*)$", text, re.M)]
    notes = [m.group(1).strip().lower() for m in re.finditer(r"^\s*(?:[-*]\s+)?\*\*(.+?)\*\*", text, re.M)]
    return heads, notes


def exists(doc, name):
    heads, notes = sections(doc)
    name = name.lower()
    return any(h.startswith(name) for h in heads) or any(n.rstrip(".") == name or n.startswith(name + " ")
                                                       for n in notes)


files = []
for place in PLACES:
    p = root / place
    if p.is_file():
        files.append(p)
    elif p.is_dir():
        files += [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix in SUFFIXES]

problems, checked = [], 0
for f in files:
    text = f.read_text(encoding="utf-8", errors="replace")
    rel = f.relative_to(root)
    for n, line in enumerate(text.splitlines(), 1):
        if PLANNING_NOTES in line:
            problems.append(f"{rel}:{n}: cites the planning notes, which users do not have: cite docs/ instead")
    for m in CITATION.finditer(WRAP.sub(" ", text)):
        doc = root / "docs" / m.group(1)
        for name in re.findall(r'"([^"]+)"', m.group(2)):
            checked += 1
            if not doc.is_file():
                problems.append(f"{rel}: cites docs/{m.group(1)}, which does not exist")
            elif not exists(doc, name):
                problems.append(f'{rel}: cites docs/{m.group(1)}, "{name}": no such heading or note there')

for p in problems:
    print(p)
print(f"check_citations: {checked} citations of sections in {len(files)} files, {len(problems)} problems")
sys.exit(1 if problems else 0)
