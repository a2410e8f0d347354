"""Run a dataset's expectation suite on a batch with Great Expectations and say what failed.

``validate`` uses an ephemeral GX context (nothing written to a GX project
folder): a pandas data source, a dataframe asset and a whole-dataframe batch
definition, run through a ValidationDefinition. The full GX result goes to
``result_path`` as JSON (atomically, so a reader never sees half a file); the
returned ``ValidationOutcome`` is the part a pipeline acts on, and its
``summary()`` is the text for the task log: one line per failed expectation,
each at most :data:`MAX_LINE_CHARS` long however much GX observed (a long value
list is cut with ``... (+N more)``, a long text with ``... (+N chars)``).

A column the batch lacks fails its expectations (GX records the error per
expectation) rather than raising: a broken batch is a validation outcome.
Importing great_expectations costs seconds, so it happens inside ``validate``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from include.data.spec import DatasetSpec
from include.util.fs import write_atomically

RESULT_FORMAT = "SUMMARY"
SAMPLE_SIZE = 5
# the longest line summary() writes for a failed expectation, and the longest one value in it
MAX_LINE_CHARS = 300
MAX_VALUE_CHARS = 60
_BULLET = "  - "
# Keys of a GX result that say what was seen; anything else in it is bookkeeping.
_COUNT_KEYS = ("element_count", "unexpected_count", "unexpected_percent", "missing_count")


@dataclass
class FailedExpectation:
    """One expectation that failed: its type, the ``column`` (None for a table-level one), the
    ``observed`` value and GX's ``details``."""

    expectation: str
    column: str | None
    observed: object
    details: dict = field(default_factory=dict)

    def describe(self, limit: int = MAX_LINE_CHARS) -> str:
        """One line, at most ``limit`` characters, saying what was expected and what was observed."""
        where = f" on column '{_clip(str(self.column), MAX_VALUE_CHARS)}'" if self.column else ""
        check = self.details.get("check")
        head = f"{self.expectation}{where}" + (f" [{_clip(str(check), limit // 3)}]" if check else "")
        head += ": observed "
        expected = self.details.get("expected") or {}
        room = max(limit - len(head), 0)
        observed_text = _format_observed(self.observed, room)
        expected_text = _format_expected(expected, room) if expected else ""
        separator = "; expected " if expected_text else ""
        if len(observed_text) + len(separator) + len(expected_text) > room:
            # share the room: what was observed (the values at fault) gets at least 3/5, the expected
            # part the rest, and either side whatever the other leaves unused
            observed_room = max((room - len(separator)) * 3 // 5, room - len(separator) - len(expected_text))
            observed_text = _format_observed(self.observed, observed_room)
            expected_text = _format_expected(expected, room - len(separator) - len(observed_text))
        return _clip(f"{head}{observed_text}{separator}{expected_text}", limit)


@dataclass
class ValidationOutcome:
    """A suite run on a snapshot: ``success``, every failure, how many expectations were ``evaluated``
    and ``successful``, and where the full result JSON is (``result_path``)."""

    success: bool
    failures: list[FailedExpectation]
    evaluated: int
    successful: int
    result_path: str

    def to_dict(self) -> dict:
        """The outcome as a dict: ``success``, ``failures`` (a list of dicts), ``evaluated``, ``successful``,
        ``result_path``."""
        return asdict(self)

    def summary(self) -> str:
        """The verdict and counts on one line, then one line per failed expectation: a str for the task log."""
        verdict = "passed" if self.success else "FAILED"
        lines = [
            f"Great Expectations validation {verdict}: {self.successful} of {self.evaluated} "
            f"expectations met, {len(self.failures)} failed (full result: {self.result_path})"
        ]
        lines += [f"{_BULLET}{failure.describe(MAX_LINE_CHARS - len(_BULLET))}" for failure in self.failures]
        return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (``limit`` >= 20), saying how much was cut."""
    limit = max(limit, 20)
    if len(text) <= limit:
        return text
    keep = limit
    while True:
        marker = f"... (+{len(text) - keep} chars)"
        if keep + len(marker) <= limit or keep == 0:
            return text[:keep] + marker
        keep = max(limit - len(marker), 0)


def _render(value: object, limit: int) -> str:
    """``repr``-like text of ``value`` in at most ``limit`` characters; a long list names how many items it drops."""
    limit = max(limit, 20)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        parts: list[str] = []
        used = 2  # the brackets
        for index, item in enumerate(items):
            text = _clip(repr(item), MAX_VALUE_CHARS)
            rest = len(items) - index - 1
            marker = len(f", ... (+{rest} more)") if rest else 0
            if used + len(text) + (2 if parts else 0) + marker > limit:
                break
            parts.append(text)
            used += len(text) + (2 if len(parts) > 1 else 0)
        if len(parts) < len(items):
            parts.append(f"... (+{len(items) - len(parts)} more)")
        return _clip("[" + ", ".join(parts) + "]", limit)
    return _clip(repr(value), limit)


def _format_expected(expected: dict, limit: int) -> str:
    """``key=value, ...`` in at most ``limit`` characters: short values whole, long lists share what is left."""
    _collections = (list, tuple, set, frozenset, dict)
    texts = {
        key: _render(value, MAX_VALUE_CHARS) for key, value in expected.items() if not isinstance(value, _collections)
    }
    long_keys = [key for key in expected if key not in texts]
    left = limit - sum(len(key) + 1 + len(text) + 2 for key, text in texts.items())
    for index, key in enumerate(long_keys):
        share = (left - (len(key) + 3) * (len(long_keys) - index)) // (len(long_keys) - index)
        texts[key] = _render(expected[key], share)
        left -= len(key) + 3 + len(texts[key])
    return _clip(", ".join(f"{key}={texts[key]}" for key in expected), limit)


def _format_observed(observed: object, limit: int = MAX_LINE_CHARS) -> str:
    limit = max(limit, 20)
    if isinstance(observed, dict) and "unexpected_count" in observed and "element_count" in observed:
        text = (
            f"{observed['unexpected_count']} of {observed.get('element_count', '?')} values unexpected "
            f"({observed.get('unexpected_percent') or 0:.2f}%)"
        )
        if observed.get("sample"):
            text += f", e.g. {_render(observed['sample'], limit - len(text) - 7)}"
        return _clip(text, limit)
    if isinstance(observed, dict) and "absent" in observed:
        text = "value(s) absent from the data: "
        return _clip(text + _render(observed["absent"], limit - len(text)), limit)
    if isinstance(observed, dict) and "outside" in observed:
        text = f"{observed.get('unexpected_count', '?')} distinct value(s) outside the set, e.g. "
        return _clip(text + _render(observed["outside"], limit - len(text)), limit)
    if isinstance(observed, str):
        return _clip(observed, limit)
    return _render(observed, limit)


def load_suite(path: Path) -> dict:
    """The suite JSON at ``path`` as a dict, checked for the shape GX needs.

    Raises ``ValueError`` for a missing file, invalid JSON, no ``name`` or ``expectations`` list,
    or an expectation without a ``type`` or with non-dict ``kwargs``.
    """
    try:
        suite = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(
            f"expectation suite {path} does not exist "
            f"(generate one with: python -m include.validation.suite --spec <spec>)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"expectation suite {path} is not valid JSON: {exc}") from None
    if not isinstance(suite, dict) or not suite.get("name") or not isinstance(suite.get("expectations"), list):
        raise ValueError(f"expectation suite {path} needs a 'name' and a list of 'expectations'")
    for index, expectation in enumerate(suite["expectations"]):
        if (
            not isinstance(expectation, dict)
            or "type" not in expectation
            or not isinstance(expectation.get("kwargs", {}), dict)
        ):
            raise ValueError(f"expectation suite {path}: expectations[{index}] needs a 'type' and dict 'kwargs'")
    return suite


@contextmanager
def _quiet_gx():
    # GX logs at INFO/WARNING about its own set-up; the task log should carry our summary, not that.
    gx_logger = logging.getLogger("great_expectations")
    previous = gx_logger.level
    gx_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        gx_logger.setLevel(previous)


def _build_suite(suite_dict: dict, path: Path):
    from great_expectations.core.expectation_suite import ExpectationSuite

    suite = ExpectationSuite(
        name=suite_dict["name"], expectations=suite_dict["expectations"], meta=suite_dict.get("meta") or None
    )
    # GX drops an invalid expectation with a logged error instead of raising; a suite
    # that silently checks less than it says must not pass a batch.
    rejected = Counter(expectation["type"] for expectation in suite_dict["expectations"]) - Counter(
        expectation.expectation_type for expectation in suite.expectations
    )
    if rejected:
        raise ValueError(
            f"expectation suite {path}: GX rejected {sum(rejected.values())} expectation(s) "
            f"(unknown type or bad kwargs): {sorted(rejected)}"
        )
    return suite


def _failure(result: dict) -> FailedExpectation:
    config = result.get("expectation_config") or {}
    kwargs = {key: value for key, value in (config.get("kwargs") or {}).items() if key != "batch_id"}
    column = kwargs.pop("column", None)
    seen = result.get("result") or {}
    details: dict = {"expected": kwargs}
    errors = [
        info.get("exception_message")
        for info in (result.get("exception_info") or {}).values()
        if isinstance(info, dict) and info.get("raised_exception")
    ]
    exception = result.get("exception_info") or {}
    if exception.get("raised_exception"):
        errors.append(exception.get("exception_message"))
    if errors:
        details["error"] = "; ".join(sorted({str(error) for error in errors}))
    meta = config.get("meta") or {}
    if meta.get("check"):
        details["check"] = str(meta["check"])
    if seen.get("observed_value") is not None:
        observed: object = seen["observed_value"]
    elif "unexpected_count" in seen and "element_count" in seen:
        observed = {key: seen[key] for key in _COUNT_KEYS if key in seen}
        observed["sample"] = list(seen.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
    elif seen.get("partial_missing_list"):  # expect_column_distinct_values_to_contain_set and kin
        observed = {"absent": list(seen["partial_missing_list"])}
    elif seen.get("partial_unexpected_list"):  # expect_column_distinct_values_to_be_in_set and kin
        observed = {
            "unexpected_count": seen.get("unexpected_count"),
            "outside": list(seen["partial_unexpected_list"])[:SAMPLE_SIZE],
        }
    elif errors:
        observed = details["error"]
    elif config.get("type") == "expect_column_to_exist":
        observed = "column missing"
    elif "observed_value" in seen:
        observed = None
    else:
        observed = seen
    return FailedExpectation(expectation=str(config.get("type")), column=column, observed=observed, details=details)


def validate(frame: pd.DataFrame, spec: DatasetSpec, result_path: Path) -> ValidationOutcome:
    """Run ``spec``'s expectation suite on ``frame``, write GX's full result to ``result_path``.

    Returns the ``ValidationOutcome``: whether every expectation held, the failed ones
    in the suite's order, the counts, and ``result_path``. A failed expectation is an
    outcome, not an error. Raises ``ValueError`` when ``frame`` is not a DataFrame or
    the suite is missing or malformed, and ``OSError`` when the result cannot be written.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"validate needs a pandas DataFrame, got {type(frame).__name__}")
    suite_dict = load_suite(spec.expectation_suite)
    result_path = Path(result_path)
    with _quiet_gx():
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        batch_definition = (
            context.data_sources.add_pandas(f"{spec.name}_source")
            .add_dataframe_asset(f"{spec.name}_batch")
            .add_batch_definition_whole_dataframe("whole_batch")
        )
        suite = context.suites.add(_build_suite(suite_dict, spec.expectation_suite))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{spec.name}_validation", data=batch_definition, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)
        result_dict = result.to_json_dict()
    write_atomically(result_path, json.dumps(result_dict, indent=2, default=str) + "\n")
    # GX orders results its own way; report failures in the suite's order, which reads top-down.
    position: dict[tuple, int] = {}
    for index, expectation in enumerate(suite_dict["expectations"]):
        position.setdefault((expectation["type"], expectation.get("kwargs", {}).get("column")), index)
    failures = [_failure(item) for item in result_dict["results"] if not item.get("success")]
    failures.sort(key=lambda failure: position.get((failure.expectation, failure.column), len(position)))
    statistics = result_dict.get("statistics") or {}
    return ValidationOutcome(
        success=bool(result_dict.get("success")),
        failures=failures,
        evaluated=int(statistics.get("evaluated_expectations", 0)),
        successful=int(statistics.get("successful_expectations", 0)),
        result_path=str(result_path),
    )
