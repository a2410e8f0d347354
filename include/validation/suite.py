"""The expectation suite a dataset spec implies, in Great Expectations' own JSON form, and its command line.

Two builders, both returning a GX Core 1.x ExpectationSuite as its JSON dict:

- ``build_suite_from_spec(spec)`` (:mod:`include.validation.expectations`) needs no
  data (a dataset that has not landed yet): the checks every training batch must
  pass, from the spec's schema and task alone;
- ``build_suite_from_data(spec, frame)`` (:mod:`include.validation.profile`) profiles
  landed data on top of the same checks: ranges, null shares and the positive
  class's share as observed, widened by a margin.

The demo suite, include/validation/suites/customer_churn.json, is exactly what
``build_suite_from_spec`` produces for the demo spec (a unit test holds it to
that); for your own dataset, generate a starting suite and edit it::

    python -m include.validation.suite --spec path/to/spec.yaml > suite.json
    python -m include.validation.suite --spec path/to/spec.yaml --profile > suite.json  # from landed data
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

from include.data.spec import DatasetSpec
from include.validation.expectations import GENERATED_BY, build_suite_from_spec
from include.validation.profile import ProfileError, build_suite_from_data


def suite_json(spec: DatasetSpec) -> str:
    """The spec-only suite (:func:`build_suite_from_spec`) as indented JSON text ending in a newline."""
    return json.dumps(build_suite_from_spec(spec), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print a suite for a spec; returns the exit status (0, or 2 when the data cannot be read or profiled).

    A bad spec or option exits through ``argparse`` (``SystemExit`` with status 2).
    """
    from include.data.partitions import DataError, partition_dates, read_window
    from include.data.spec import SpecError, load_spec
    from include.settings import Settings

    parser = argparse.ArgumentParser(
        prog=GENERATED_BY, description="Print a starting Great Expectations suite (JSON) for a dataset spec."
    )
    parser.add_argument("--spec", type=Path, help="dataset spec (default: MLOPS_DATASET_SPEC or the demo spec)")
    parser.add_argument(
        "--profile", action="store_true", help="infer ranges, null shares and class shares from every landed partition"
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec or Settings.from_env().dataset_spec)
    except SpecError as exc:
        parser.error(str(exc))
    if not args.profile:
        sys.stdout.write(suite_json(spec))
        return 0
    try:
        days = partition_dates(spec)
        if not days:
            print(
                f"error: no landed data for {spec.name} in {spec.location} to profile; "
                f"land it first: run `python -m include.data.ingest --spec {spec.source} SOURCE...`, "
                "then profile again",
                file=sys.stderr,
            )
            return 2
        frame = read_window(spec, days[0], days[-1] + timedelta(days=1))
        suite = build_suite_from_data(spec, frame, days=days)
    except (DataError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(suite, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
