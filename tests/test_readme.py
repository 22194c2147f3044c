"""The README names only what exists: every repository path it names is in the tree, and every
`--flag` of a `train.py`, `export.py` or `bench/*.py` command it shows is one that script
defines (its `--helpfull`, one subprocess per script)."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

README = REPO / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A script and what follows it on its command line, up to a shell separator or a comment.
COMMAND = re.compile(r"(?:^|[\s'\"])((?:bench/)?[\w-]+\.py)\b([^#;|&]*)")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z_][\w-]*)")
HELP_FLAG = re.compile(r"^\s+--(\[no\])?([A-Za-z_][\w-]*):", re.M)
TREE_NAMES = re.compile(r"^( *)(\S.*?)(?: {2,}.*)?$")


def _split(text):
    """(fenced code blocks, the prose between them)."""
    return FENCE.findall(text), FENCE.sub("", text)


def _joined_lines(block):
    """The lines of a code block, backslash-continued lines joined."""
    return block.replace("\\\n", " ").splitlines()


def _tree_paths(block):
    """Paths of a layout block: each line names files or folders (before a gap of 2+ spaces),
    under the folder of the nearest less-indented line ending in '/'."""
    paths, parents = [], []  # parents: (indent, folder)
    for line in block.splitlines():
        match = TREE_NAMES.match(line)
        if not match:
            continue
        indent, names = len(match.group(1)), match.group(2)
        parents = [(i, f) for i, f in parents if i < indent]
        prefix = "".join(f for _, f in parents)
        for name in re.split(r"[,\s]+", names):
            if name:
                paths.append(prefix + name)
        if names.endswith("/") and " " not in names:
            parents.append((indent, names))
    return paths


def _is_tree(block):
    return all(TREE_NAMES.match(line) for line in block.splitlines() if line.strip()) and \
        "pixel_cnn_pp/" in block and "python" not in block


def repo_paths(text, top_level):
    """Repository paths the text names: in backticks or links, a path whose first part is an
    entry of the repository's top level (`top_level`), or a bare `*.py` file name; and every
    name of a layout block (a fenced tree of the repository)."""
    blocks, prose = _split(text)
    candidates = [m.strip() for m in INLINE.findall(prose)]
    candidates += [t for t in LINK.findall(prose) if not re.match(r"[a-z]+:|#", t)]
    found = []
    for token in candidates:
        first = token.split("/", 1)[0]
        if " " in token or token.startswith(("<", "...")):
            continue
        if ("/" in token and first in top_level) or re.fullmatch(r"[\w-]+\.py", token):
            found.append(token)
    for block in blocks:
        if _is_tree(block):
            found += _tree_paths(block)
    return found


def missing_paths(text, root):
    """The paths of `repo_paths` that match nothing under `root` (a bare file name may be in
    any folder; * matches as in glob)."""
    top_level = set(os.listdir(root))
    missing = []
    for path in repo_paths(text, top_level):
        pattern = path if "/" in path else f"**/{path}"
        if not list(root.glob(pattern.rstrip("/"))):
            missing.append(path)
    return missing


def commands(text):
    """{script: flag names} of every command line in the text (code blocks and inline code),
    and the flags of inline code that is a lone flag (`--name` or `--name=value`) under None."""
    blocks, prose = _split(text)
    lines = [line for block in blocks for line in _joined_lines(block)]
    spans = INLINE.findall(prose)
    found = {}
    for line in lines + spans:
        for script, rest in COMMAND.findall(line):
            if script in ("train.py", "export.py") or script.startswith("bench/"):
                found.setdefault(script, set()).update(FLAG.findall(rest))
    for span in spans:
        if re.fullmatch(r"--[A-Za-z_][\w-]*(=.*)?", span.strip()):
            found.setdefault(None, set()).update(FLAG.findall(span))
    return found


def helpfull_flags(script):
    """The flag names `python <script> --helpfull` lists (booleans also as --no<name>)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, script, "--helpfull"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300).stdout
    names = set()
    for negatable, name in HELP_FLAG.findall(out):
        names.add(name)
        if negatable:
            names.add("no" + name)
    assert names, f"{script} --helpfull listed no flags"
    return names


def unknown_flags(found, defined):
    """'script --flag' for each flag of `found` ({script: names}) that `defined` ({script:
    names}) lacks; a lone flag (script None) must be defined by one of the scripts."""
    every = set().union(*defined.values())
    return sorted(f"{script or 'any script'} --{name}" for script, names in found.items()
                  for name in names if name not in (defined[script] if script else every))


@pytest.fixture(scope="module")
def readme():
    return README.read_text()


def test_every_repository_path_the_readme_names_exists(readme):
    assert len(repo_paths(readme, set(os.listdir(REPO)))) > 30  # the parser still finds them
    assert missing_paths(readme, REPO) == []


def test_every_flag_the_readme_uses_is_defined_by_its_script(readme):
    found = commands(readme)
    assert {"train.py", "export.py"} <= set(found)
    defined = {script: helpfull_flags(script) for script in found if script}
    assert unknown_flags(found, defined) == []


def test_the_checks_report_a_made_up_path_and_flag(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "real.py").write_text("")
    text = ("See `pkg/real.py`, `pkg/made_up.py` and [notes](pkg/NOTES.md).\n\n"
            "```\npython train.py --preset=demo \\\n  --made_up_flag=1  # --not_a_flag\n```\n"
            "Or `export.py --describe=x` and `--nowhere`.\n")
    assert missing_paths(text, tmp_path) == ["pkg/made_up.py", "pkg/NOTES.md"]
    found = commands(text)
    assert found == {"train.py": {"preset", "made_up_flag"}, "export.py": {"describe"},
                     None: {"nowhere"}}
    defined = {"train.py": {"preset", "export_at_end", "noexport_at_end"}, "export.py": set()}
    assert unknown_flags(found, defined) == [
        "any script --nowhere", "export.py --describe", "train.py --made_up_flag"]
