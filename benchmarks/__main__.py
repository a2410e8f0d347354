"""``make bench``: every benchmark, then ``benchmarks/RESULTS.md``.

Each section runs in its own interpreter and leaves its figures in
``benchmarks/.work/results/<section>.json``; the table is written from those.
``BENCH_QUICK=1`` runs fewer repetitions and windows and skips the million-row drift cases
(a quick look while developing; the table then says so).

    python -m benchmarks                                # all sections, then RESULTS.md
    python -m benchmarks --only drift drift_verdicts    # some sections, then RESULTS.md from what is there
    python -m benchmarks --report                       # RESULTS.md from the results already there
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import RESULTS_DIR, ROOT, machine, project_env, quick, save

# cheap and quiet first; the ones that start servers and Airflow last
SECTIONS = ("parse", "training", "drift", "drift_verdicts", "rollout_power", "serving", "orchestration")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only")
    parser.add_argument("--report", action="store_true", help="only write RESULTS.md from the saved results")
    args = parser.parse_args(argv)

    from benchmarks.report import write_report

    failed = []
    if not args.report:
        sections = args.only or SECTIONS
        if not args.only:
            # a full run replaces every figure: none may be left over from an earlier run
            for stale in RESULTS_DIR.glob("*.json"):
                stale.unlink()
        save("machine", {**machine(), "quick": quick(), "started_at": time.strftime("%Y-%m-%d %H:%M %Z")})
        for section in sections:
            print(f"== {section}", flush=True)
            started = time.monotonic()
            completed = subprocess.run([sys.executable, "-m", f"benchmarks.{section}"], cwd=ROOT, env=project_env())
            print(
                f"== {section}: {'done' if completed.returncode == 0 else 'FAILED'} in "
                f"{time.monotonic() - started:.0f}s",
                flush=True,
            )
            if completed.returncode != 0:
                failed.append(section)
    path = write_report()
    print(f"wrote {path}")
    if failed:
        print(f"failed: {', '.join(failed)} (their rows in {path.name} say so)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
