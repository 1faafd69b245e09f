"""`make mutation`: mutation testing of the money and counting code, then mutation/REPORT.md.

    .venv/bin/python mutation/run.py                                  # this checkout: the "after" column
    .venv/bin/python mutation/run.py --tree /tmp/old --label before   # another checkout: the "before" column

Everything runs in copies under build/mutation/<label>/ (never in the checkout itself):
1. mutmut mutates the Python modules of [tool.mutmut] `only_mutate` in pyproject.toml and runs, for each
   mutant, only the tests of `pytest_add_cli_args_test_selection` that call the mutated function;
2. mutation/lua_mutants.py plants its list of bugs in the Lua money scripts, one at a time;
3. the counts and the survivors go to mutation/results/<label>.json, and mutation/report.py writes REPORT.md
   from the "before" and "after" results and the explanations in mutation/equivalent.toml.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import lua_mutants  # noqa: E402
import report  # noqa: E402

# mutmut's exit codes (mutmut.stats.status_by_exit_code) folded into the report's columns.
STATUS_BY_EXIT_CODE = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS_BY_EXIT_CODE.update({code: "timeout" for code in (36, -24, 24, 152, 255)})


def mutmut_section(pyproject: str) -> str:
    """The [tool.mutmut] table of a pyproject.toml text, up to the next table."""
    match = re.search(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", pyproject, flags=re.M)
    if match is None:
        raise SystemExit("pyproject.toml has no [tool.mutmut] table")
    return match.group(0)


def configure(copy: Path) -> None:
    """The copy runs with this checkout's [tool.mutmut] table, whatever its own pyproject.toml says (an old
    commit has none): both columns of the report measure the same modules with the same tests."""
    ours = mutmut_section((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    path = copy / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    if "[tool.mutmut]" in text:
        text = text.replace(mutmut_section(text), "")
    path.write_text(text.rstrip("\n") + "\n\n" + ours, encoding="utf-8")


def run_mutmut(copy: Path, jobs: int, log: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_TEST_REDIS_URL", "PYTHONPATH")}
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)], cwd=copy, env=env, stdout=out
        )
    if done.returncode != 0:
        raise SystemExit(f"mutmut failed ({done.returncode}); see {log}")


def function_span(source: str, qualified: str) -> tuple[int, int]:
    """First and last line of function `name` or method `Class.name` in a module's source."""
    names = qualified.split(".")
    body: list[ast.stmt] = ast.parse(source).body
    node: ast.AST | None = None
    for name in names:
        node = next(
            n for n in body if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
        )
        body = node.body  # type: ignore[attr-defined]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first, node.end_lineno or node.lineno


def parse_mutant_name(name: str) -> tuple[str, str]:
    """'gateway.billing.pricing.xǁPriceǁcost_micros__mutmut_3' -> 'gateway/billing/pricing.py', 'Price.cost_micros'."""
    head, _, _ = name.rpartition("__mutmut_")
    module, _, function = head.rpartition(".")
    if function.startswith("xǁ"):
        _, cls, method = function.split("ǁ")
        qualified = f"{cls}.{method}"
    else:
        qualified = function.removeprefix("x_")
    return module.replace(".", "/") + ".py", qualified


def locate(diff: str, source: str, qualified: str) -> tuple[int, str]:
    """The line of the module where a mutant's diff changes something, and the change in one line."""
    lines = diff.splitlines()
    old = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
    new = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    summary = " / ".join(part.strip() for part in old) + "  ->  " + " / ".join(part.strip() for part in new)
    first, last = function_span(source, qualified)
    # Where the diff puts the first changed line, counted from the function's first line; the same text can
    # occur twice in a function, so the occurrence nearest that position is the one.
    offset = 0
    for number, line in enumerate(lines):
        if line.startswith("@@"):
            offset = int(line.split()[1].split(",")[0].lstrip("-"))
            for body in lines[number + 1 :]:
                if body.startswith("-"):
                    break
                offset += 1
            break
    expected = first + max(offset - 1, 0)
    wanted = old[0].strip() if old else ""
    source_lines = source.splitlines()
    candidates = [n for n in range(first, last + 1) if source_lines[n - 1].strip() == wanted]
    return (min(candidates, key=lambda n: abs(n - expected)) if candidates else first), summary


def python_results(copy: Path) -> tuple[dict[str, Counter[str]], list[dict[str, object]]]:
    """Per module counts, and every mutant not killed, from mutmut's files in the copy."""
    os.chdir(copy)  # mutmut reads its config and mutants from the working directory
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    counts: dict[str, Counter[str]] = {}
    survivors: list[dict[str, object]] = []
    for meta in sorted((copy / "mutants").rglob("*.py.meta")):
        module = str(meta.relative_to(copy / "mutants")).removesuffix(".meta")
        exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        counts[module] = Counter()
        source = (copy / module).read_text(encoding="utf-8")
        for name, code in sorted(exit_codes.items(), key=lambda item: _natural(item[0])):
            status = STATUS_BY_EXIT_CODE.get(code, f"other ({code})")
            counts[module][status] += 1
            if status == "killed":
                continue
            diff = get_diff_for_mutant(name, path=module)
            line, summary = locate(diff, source, parse_mutant_name(name)[1])
            survivors.append({"module": module, "line": line, "name": name, "status": status, "mutation": summary})
    os.chdir(REPO)
    return counts, survivors


def _natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("__mutmut_")
    return head, int(number)


def git_describe(tree: Path) -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_changes": bool(git("status", "--porcelain"))}


def save(path: Path, results: dict[str, object]) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="Mutation testing of the money and counting code.")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout to measure (default: this one)")
    parser.add_argument("--label", default="after", help="results/<label>.json; the report reads before and after")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-python", action="store_true")
    parser.add_argument("--skip-lua", action="store_true")
    parser.add_argument(
        "--collect-python", action="store_true", help="read the last mutmut run's results instead of running it"
    )
    args = parser.parse_args()
    tree = args.tree.resolve()
    work = REPO / "build" / "mutation" / args.label
    work.mkdir(parents=True, exist_ok=True)
    results_path = HERE / "results" / f"{args.label}.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    results.update(
        label=args.label,
        tree=git_describe(tree),
        date=datetime.date.today().isoformat(),
        tool=f"mutmut {importlib.metadata.version('mutmut')}",
        python=platform.python_version(),
        jobs=args.jobs,
    )
    results.setdefault("modules", {})
    results.setdefault("survivors", [])
    results.setdefault("seconds", {})

    if not args.skip_python:
        copy = work / "tree"
        if not args.collect_python:
            lua_mutants.copy_tree(tree, copy)
            configure(copy)
            started = time.monotonic()
            print(f"mutmut in {copy} (log: {work / 'mutmut.log'})", flush=True)
            run_mutmut(copy, args.jobs, work / "mutmut.log")
            results["seconds"]["python"] = round(time.monotonic() - started)
        counts, survivors = python_results(copy)
        results["modules"] = {m: c for m, c in results["modules"].items() if m.endswith(".lua")}
        results["modules"].update({m: dict(c) for m, c in counts.items() if sum(c.values())})
        results["survivors"] = [s for s in results["survivors"] if str(s["module"]).endswith(".lua")] + survivors
        save(results_path, results)

    if not args.skip_lua:
        started = time.monotonic()
        print("Lua mutants", flush=True)
        lua = lua_mutants.run(tree, work, jobs=args.jobs)
        results["seconds"]["lua"] = round(time.monotonic() - started)
        results["modules"] = {m: c for m, c in results["modules"].items() if not m.endswith(".lua")}
        results["survivors"] = [s for s in results["survivors"] if not str(s["module"]).endswith(".lua")]
        # A mutant whose search string is not in this tree's script (code written since) is no mutant of it.
        results["lua_not_applicable"] = [r.name for r in lua if r.status == "not applicable"]
        results["lua"] = [
            {"name": r.name, "script": r.script, "line": r.line, "status": r.status, "seconds": round(r.seconds, 1)}
            for r in lua
        ]
        for result in (r for r in lua if r.status != "not applicable"):
            module = str(lua_mutants.LUA_DIR / result.script)
            results["modules"].setdefault(module, {})
            results["modules"][module][result.status] = results["modules"][module].get(result.status, 0) + 1
            if result.status != "killed":
                mutation = f"{result.search.strip()}  ->  {result.replace.strip()}"
                survivors = results["survivors"]
                survivors.append(
                    {
                        "module": module,
                        "line": result.line,
                        "name": result.name,
                        "status": result.status,
                        "mutation": mutation,
                    }
                )

    save(results_path, results)
    report.write(HERE)
    print(f"wrote {results_path.relative_to(REPO)} and mutation/REPORT.md")


if __name__ == "__main__":
    main()
