#!/usr/bin/env python3
"""Offline link check of every Markdown file in the repository (git-tracked and new ones):
each relative link must name a file or directory that exists, and a `#fragment` must name a
heading of the target Markdown file (GitHub's and mdBook's slug: lowercase, alphanumerics,
`-` and `_` kept, spaces to `-`, the rest dropped; a repeated heading gets `-1`, `-2`, …).
Links to other sites are not fetched. Also: every page of docs/src is in SUMMARY.md, and every
page SUMMARY.md names exists. Prints each broken link; exits 1 if there is any.
"""
import os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted(f for f in out if os.path.exists(os.path.join(ROOT, f)))


def slug(text):
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join(c if (c.isalnum() or c in "-_") else "-" if c.isspace() else "" for c in text)


def strip_code(text):
    """Fenced blocks and inline code spans removed (links in them are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


ANCHORS = {}


def anchors(path):
    if path not in ANCHORS:
        seen, found = {}, set()
        text = re.sub(r"^```.*?^```", "", open(path).read(), flags=re.S | re.M)
        for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
            s = slug(m.group(1))
            n = seen.get(s, 0)
            found.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
        ANCHORS[path] = found
    return ANCHORS[path]


def main():
    broken = []
    files = markdown_files()
    for f in files:
        full = os.path.join(ROOT, f)
        text = strip_code(open(full).read())
        for m in re.finditer(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            target = m.group(1)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # https:, mailto:
            path, _, frag = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(full), path)) if path else full
            if not os.path.exists(dest):
                broken.append(f"{f}: {target}: no such file")
                continue
            if frag and dest.endswith(".md") and frag not in anchors(dest):
                broken.append(f"{f}: {target}: no heading #{frag} in {os.path.relpath(dest, ROOT)}")
    src = os.path.join(ROOT, "docs", "src")
    summary = open(os.path.join(src, "SUMMARY.md")).read()
    listed = set(re.findall(r"\]\(([^)]+\.md)\)", summary))
    for dirpath, _, names in os.walk(src):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), src)
            if n.endswith(".md") and n != "SUMMARY.md" and rel not in listed:
                broken.append(f"docs/src/{rel}: not in SUMMARY.md")
    for b in broken:
        print("FAIL", b)
    print(f"check_docs: {len(files)} Markdown files, {len(broken)} broken link(s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
