"""DAG parse cost: what each DAG file costs the dag-processor, against the same DAG with top-level imports.

For every file of ``dags/``, in a fresh interpreter each time:

- *above airflow.sdk* (the figure the target is about): the interpreter imports
  ``airflow.sdk`` (what any DAG file needs, and what the dag-processor has loaded
  before it parses a file), then the clock runs while the DAG file is executed;
  the modules that appear meanwhile are the file's, and none may be an ML library;
- *process wall time*: from starting the interpreter to the parsed DAG, with the
  wall time of a bare ``python -c pass`` and of ``import airflow.sdk`` alone beside it;
- *in the dag-processor*: the same clock, in an interpreter that also holds what a
  dag-processor's parsing process holds before it runs the file (the module of its
  parse entry point, and the ``airflow`` modules the file names, which the processor
  pre-imports).

The comparison is the same DAG with its imports at top level: a copy of the DAG
file and of ``plugins/mlops_airflow`` in which every import made inside a function
(task bodies, operator ``execute`` methods) is also made when the module loads,
as a DAG written without regard to parse cost would. ``include/`` is unchanged.

    python -m benchmarks.parse
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, WORK, median, project_env, runs, save

DAGS = sorted((ROOT / "dags").glob("*.py"))
PLUGIN_PACKAGE = ROOT / "plugins" / "mlops_airflow"
ML_MODULES = (
    "torch",
    "sklearn",
    "mlflow",
    "great_expectations",
    "evidently",
    "dvc",
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
    "kubernetes",
)
TARGET_MS = 50.0
# Airflow's own floor: the smallest DAG in the style of its example DAGs, one @task and a schedule
MINIMAL_DAG = '''"""
## minimal

One task.
"""
import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["example"],
     doc_md=__doc__)
def minimal():
    @task
    def hello() -> str:
        return "hello"

    hello()


minimal()
'''

MEASURE = r"""
import importlib, importlib.util, json, sys, time
started = time.perf_counter()
import airflow.sdk
sdk_loaded = time.perf_counter()
if sys.argv[3] == "processor":
    # what the dag-processor's parsing process holds before it runs the file: the module of
    # its parse entry point (forked from the manager, which has it loaded), and the airflow
    # modules the file names, which the manager pre-imports ([dag_processor] parsing_pre_import_modules)
    import airflow.dag_processing.processor
    from airflow.utils.file import iter_airflow_imports
    for name in iter_airflow_imports(sys.argv[1]):
        importlib.import_module(name)
    sdk_loaded = time.perf_counter()
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
parsed = time.perf_counter()
loaded = sorted(set(sys.modules) - before)
ml = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2].split(",")))
print(json.dumps({"sdk_seconds": sdk_loaded - started, "parse_seconds": parsed - sdk_loaded,
                  "modules": len(loaded), "ml_modules": ml}))
"""


# what importing Airflow's human-in-the-loop operator (ml_training's approval step) adds to a
# process that has already parsed a one-task DAG
HITL_IMPORT = r"""
import importlib.util, json, sys, time
import airflow.sdk
spec = importlib.util.spec_from_file_location("minimal_dag", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
started = time.perf_counter()
import airflow.providers.standard.operators.hitl
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


# ------------------------------------------------------------------------------------------ top-level variant
def _hoisted_imports(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement inside a function of ``tree``, each guarded so a missing optional module is no error."""
    hoisted, seen = [], set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.ImportFrom) and child.module == "__future__":
                    continue
                source = ast.unparse(child)
                if source not in seen:
                    seen.add(source)
                    hoisted.append(ast.parse(f"try:\n    {source}\nexcept ImportError:\n    pass").body[0])
            visit(child, inside)

    visit(tree, False)
    return hoisted


def with_top_level_imports(source: str) -> str:
    tree = ast.parse(source)
    hoisted = _hoisted_imports(tree)
    # after the module's own imports, so that `from __future__` stays first
    last_import = max(
        (index for index, node in enumerate(tree.body) if isinstance(node, (ast.Import, ast.ImportFrom))), default=0
    )
    tree.body[last_import + 1 : last_import + 1] = hoisted
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def build_top_level_variant(folder: Path) -> tuple[Path, Path]:
    """Copies of ``dags/`` and ``plugins/mlops_airflow`` with top-level imports; returns (dags, plugins)."""
    if folder.exists():
        shutil.rmtree(folder)
    dags, plugins = folder / "dags", folder / "plugins"
    (plugins / PLUGIN_PACKAGE.name).mkdir(parents=True)
    dags.mkdir()
    for path in DAGS:
        (dags / path.name).write_text(with_top_level_imports(path.read_text()))
    for path in PLUGIN_PACKAGE.glob("*.py"):
        (plugins / PLUGIN_PACKAGE.name / path.name).write_text(with_top_level_imports(path.read_text()))
    return dags, plugins


# ------------------------------------------------------------------------------------------ measuring
def _process(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"`python {' '.join(args[:2])}...` failed:\n{completed.stderr[-3000:]}")
    return wall, completed.stdout


def measure_file(path: Path, env: dict[str, str], setting: str = "sdk") -> dict:
    """``setting``: "sdk" (after ``import airflow.sdk``) or "processor" (what a dag-processor child holds)."""
    wall, stdout = _process(["-c", MEASURE, str(path), ",".join(ML_MODULES), setting], env)
    return {**json.loads(stdout.strip().splitlines()[-1]), "process_seconds": wall}


def main() -> int:
    repetitions = runs(7, 2)
    env = project_env(AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW_HOME=str(WORK / "parse-airflow-home"))
    top_dags, top_plugins = build_top_level_variant(WORK / "top-level-imports")
    top_env = {**env, "PYTHONPATH": os.pathsep.join([str(top_plugins), str(ROOT), str(ROOT / "plugins")])}
    minimal_path = WORK / "minimal_dag.py"
    minimal_path.write_text(MINIMAL_DAG)

    # warm the disk cache and the bytecode caches (common.bytecode_env), so that no figure includes
    # compiling: a dag-processor re-parsing a file has the bytecode of what it imports cached
    for path in [*DAGS, minimal_path]:
        measure_file(path, env)
        measure_file(path, env, "processor")
    for path in DAGS:
        measure_file(top_dags / path.name, top_env)

    samples: dict[str, dict[str, list[dict]]] = {
        path.name: {"thin": [], "top": [], "processor": []} for path in [*DAGS, minimal_path]
    }
    bare, sdk, hitl = [], [], []
    for _ in range(repetitions):
        # every file and variant once per round, so that a slow spell of the machine hits them all alike
        bare.append(_process(["-c", "pass"], env)[0])
        sdk.append(_process(["-c", "import airflow.sdk"], env)[0])
        hitl.append(
            json.loads(_process(["-c", HITL_IMPORT, str(minimal_path)], env)[1].strip().splitlines()[-1])["seconds"]
        )
        for path in [*DAGS, minimal_path]:
            samples[path.name]["thin"].append(measure_file(path, env))
            samples[path.name]["processor"].append(measure_file(path, env, "processor"))
            if path != minimal_path:
                samples[path.name]["top"].append(measure_file(top_dags / path.name, top_env))

    files = []
    for path in DAGS:
        thin, top, processor = (samples[path.name][variant] for variant in ("thin", "top", "processor"))
        ratios = [t["parse_seconds"] / p["parse_seconds"] for p, t in zip(thin, top, strict=False)]
        result = {
            "dag_file": f"dags/{path.name}",
            "parse_ms": 1000 * median([m["parse_seconds"] for m in thin]),
            "process_ms": 1000 * median([m["process_seconds"] for m in thin]),
            "modules": thin[0]["modules"],
            "ml_modules": sorted({name for m in thin for name in m["ml_modules"]}),
            "top_level_parse_ms": 1000 * median([m["parse_seconds"] for m in top]),
            "top_level_process_ms": 1000 * median([m["process_seconds"] for m in top]),
            "top_level_modules": top[0]["modules"],
            "top_level_ml_modules": sorted({name for m in top for name in m["ml_modules"]}),
            "ratio": median(ratios),
            "processor_parse_ms": 1000 * median([m["parse_seconds"] for m in processor]),
        }
        print(
            f"  parse {result['dag_file']}: {result['parse_ms']:.1f} ms above airflow.sdk, "
            f"{result['processor_parse_ms']:.1f} ms in the dag-processor ({result['modules']} modules, ML: "
            f"{result['ml_modules'] or 'none'}); top-level imports {result['top_level_parse_ms']:.0f} ms "
            f"({', '.join(result['top_level_ml_modules']) or 'no ML'})",
            flush=True,
        )
        files.append(result)
    minimal = samples[minimal_path.name]
    save(
        "parse",
        {
            "runs": repetitions,
            "target_ms": TARGET_MS,
            "bare_interpreter_ms": 1000 * median(bare),
            "airflow_sdk_process_ms": 1000 * median(sdk),
            "minimal_dag_ms": 1000 * median([m["parse_seconds"] for m in minimal["thin"]]),
            "minimal_dag_modules": minimal["thin"][0]["modules"],
            "minimal_dag_processor_ms": 1000 * median([m["parse_seconds"] for m in minimal["processor"]]),
            "hitl_import_ms": 1000 * median(hitl),
            "files": files,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
