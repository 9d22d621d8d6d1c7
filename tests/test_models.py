"""Header models: every rule of the spec refuses what it must and accepts what it may."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlarray import HeaderValidationError, Meta, UnsupportedVersionError
from mlarray.models import PROBLEM_KINDS, parse_header
from mlarray.models.v1.spatial import ORTHONORMAL_TOL


def header(**spatial: object) -> dict[str, object]:
    return {"schema_version": "1.0", "array": {"shape": [4, 5, 6], "dtype": "<f4"}, "spatial": spatial}


@pytest.mark.parametrize(
    ("spatial", "fragment"),
    [
        ({"spacing": [1, 1]}, "describe 2 axes"),
        ({"spacing": [1, 0, 1]}, "greater than 0"),
        ({"origin": [0, 0, 0], "spacing": [1, 1]}, "entries"),
        ({"direction": [[1, 0], [0, 1], [0, 0]]}, "square"),
        ({"direction": [[1, 0.1, 0], [0, 1, 0], [0, 0, 1]]}, "not orthonormal"),
        ({"affine": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]}, "last row"),
        ({"affine": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "spacing": [1, 1, 1]}, "disagrees"),
        ({"axis_labels": ["spatial", "spatial"]}, "axis_labels"),
        ({"shape": [4, 5, 7]}, "spatial.shape"),
        ({"axis_labels": ["channel", "spatial", "spatial"], "spacing": [1, 1, 1]}, "2 spatial axes"),
    ],
)
def test_spatial_rules_refuse(spatial: dict[str, object], fragment: str) -> None:
    with pytest.raises(HeaderValidationError) as info:
        parse_header(header(**spatial))
    assert fragment in str(info.value)
    assert all(p.code in PROBLEM_KINDS for p in info.value.problems)


@pytest.mark.parametrize(
    ("spatial", "fragments"),
    [
        (
            {"axis_labels": ["spatial"] * 3, "origin": [0, 0], "direction": [[1, 0.1, 0], [0, 1, 0], [0, 0, 1]]},
            ["origin has 2 entries", "not orthonormal"],
        ),
        (
            {"spacing": [1, 1, 1], "axis_units": ["mm"], "axis_labels": ["spatial"] * 3, "affine": [[0] * 4] * 4},
            ["axis_units has 1 entries", "last row", "singular"],
        ),
        (
            {
                "direction": [[1, 0.1, 0], [0, 1, 0], [0, 0, 1]],
                "affine": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
            },
            ["not orthonormal", "disagrees"],
        ),
    ],
)
def test_every_broken_spatial_rule_is_reported(spatial: dict[str, object], fragments: list[str]) -> None:
    with pytest.raises(HeaderValidationError) as info:
        parse_header(header(**spatial))
    text = str(info.value)
    assert [fragment in text for fragment in fragments] == [True] * len(fragments)
    assert len(info.value.problems) == len(fragments)
    assert {p.code for p in info.value.problems} == {"rule_violation"}


def test_each_broken_spatial_rule_is_a_problem_at_its_member() -> None:
    spatial = {
        "axis_labels": ["spatial"] * 3,
        "origin": [0, 0],
        "direction": [[1, 0.1, 0], [0, 1, 0], [0, 0, 1]],
        "affine": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]],
    }
    with pytest.raises(HeaderValidationError) as info:
        parse_header(header(**spatial))
    assert [p.loc for p in info.value.problems] == ["spatial.origin", "spatial.direction", "spatial.affine"]
    assert "origin has 2 entries but there are 3 spatial axes" in info.value.problems[0].message


def test_without_labels_the_message_names_the_member_that_set_the_axes() -> None:
    with pytest.raises(HeaderValidationError) as info:
        parse_header(header(spacing=[1, 1], origin=[0, 0, 0, 0]))
    assert info.value.problems[0].loc == "spatial.origin"
    assert info.value.problems[0].message == "origin has 4 entries but spacing describes 2 spatial axes"


def test_rules_needing_a_right_size_are_not_checked_on_a_wrong_size() -> None:
    # a 2x2 direction for 3 axes: no orthonormality message, and no affine comparison with it
    spatial = {"direction": [[1, 0], [0, 1]], "axis_labels": ["spatial"] * 3, "affine": np.eye(4).tolist()}
    with pytest.raises(HeaderValidationError) as info:
        parse_header(header(**spatial))
    text = str(info.value)
    assert "direction is 2x2 but there are 3 spatial axes" in text
    assert "orthonormal" not in text and "disagrees" not in text


def test_sheared_affine_alone_is_accepted_and_oblique_direction_too() -> None:
    sheared = [[1, 0.5, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]]
    assert parse_header(header(affine=sheared)).spatial.affine == sheared
    c, s = math.cos(0.3), math.sin(0.3)
    oblique = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    meta = parse_header(header(direction=oblique, spacing=[1, 2, 3], origin=[4, 5, 6]))
    assert meta.spatial.direction == oblique


def test_orthonormal_tolerance_is_as_stated() -> None:
    near = [[1, ORTHONORMAL_TOL / 10, 0], [0, 1, 0], [0, 0, 1]]
    parse_header(header(direction=near))
    far = [[1, ORTHONORMAL_TOL * 10, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(HeaderValidationError):
        parse_header(header(direction=far))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_everywhere(bad: float) -> None:
    with pytest.raises(HeaderValidationError):
        parse_header(header(origin=[0, bad, 0]))
    with pytest.raises(HeaderValidationError):
        Meta(source={"x": {"y": [1, bad]}})
    with pytest.raises(HeaderValidationError):
        Meta(stats={"mean": bad})


def test_all_problems_are_reported_at_once_with_locations() -> None:
    data = header(spacing=[1, -1, 1])
    data["is_seg"] = "perhaps"
    data["unknown"] = 1
    with pytest.raises(HeaderValidationError) as info:
        parse_header(data)
    locs = {p.loc: p.code for p in info.value.problems}
    assert locs == {"spatial.spacing.1": "out_of_range", "is_seg": "wrong_type", "unknown": "unknown_field"}


def test_bbox_rules() -> None:
    ok = {"bboxes": [[[0, 1], [2, 3], [4, 5]]], "scores": [0.9], "labels": ["lesion"]}
    assert parse_header({**header(), "bbox": ok}).bbox.labels == ["lesion"]  # type: ignore[union-attr]
    for bad in (
        {"bboxes": [[[0, 1], [2, 3]]]},  # 2-d boxes on a 3-d image
        {"bboxes": [[[1, 0], [2, 3], [4, 5]]]},  # min > max
        {"bboxes": [[[0, 1], [2, 3], [4, 5]]], "scores": [0.1, 0.2]},  # misaligned scores
        {"bboxes": [[[0, 1], [2, 3], [4, 5]], [[0, 1], [2, 3]]]},  # mixed dimensionality
    ):
        with pytest.raises(HeaderValidationError):
            parse_header({**header(), "bbox": bad})


def test_stats_rules() -> None:
    assert parse_header({**header(), "stats": {"min": -1, "max": 2, "percentile_min_key": 0.5}}).stats.max == 2  # type: ignore[union-attr]
    for bad in ({"min": 3, "max": 2}, {"std": -1}, {"percentile_max_key": 101}):
        with pytest.raises(HeaderValidationError):
            parse_header({**header(), "stats": bad})


def test_versions() -> None:
    with pytest.raises(UnsupportedVersionError):
        parse_header({"schema_version": "2.0"})
    with pytest.raises(HeaderValidationError):
        parse_header({"schema_version": "one"})
    with pytest.raises(HeaderValidationError):
        parse_header({"schema_version": "1.0", "future_field": 1})
    # A newer minor version may add fields: this reader ignores them, at every level.
    meta = parse_header({"schema_version": "1.3", "future_field": 1, "spatial": {"future": 2, "spacing": [1]}})
    assert meta.spatial.spacing == [1]


def test_free_form_namespaces_compare_like_plain_values_and_validate_edits() -> None:
    meta = Meta(source={"patient_id": "123"}, is_seg=True)
    assert meta.source == {"patient_id": "123"}
    assert meta.is_seg == True  # noqa: E712 - the comparison users write
    meta.source["nested"] = {"a": [1, 2.5, None, True, np.float32(0.5), np.int64(3)]}
    assert meta.source["nested"] == {"a": [1, 2.5, None, True, 0.5, 3]}
    for bad in (float("nan"), b"bytes", object(), {1: "non-string key"}):
        with pytest.raises(HeaderValidationError):
            meta.source["bad"] = bad
    with pytest.raises(HeaderValidationError):
        meta.source["nested"]["a"].append(float("inf"))
    with pytest.raises(HeaderValidationError):
        meta.is_seg = "maybe"  # type: ignore[assignment]
    assert meta.is_seg is True and "bad" not in meta.source


def test_rejected_assignment_leaves_model_unchanged() -> None:
    meta = parse_header(header(spacing=[1, 2, 3], origin=[0, 0, 0]))
    with pytest.raises(HeaderValidationError):
        meta.spatial.spacing = [1, 2]
    with pytest.raises(HeaderValidationError):
        meta.spatial.spacing = [1, -2, 3]
    assert meta.spatial.spacing == [1, 2, 3]


def test_scaling_member_of_schema_1_1() -> None:
    from mlarray.models import Scaling

    scaling = {"slope": 0.5, "intercept": -1024.0, "raw_dtype": "<u2", "stored": "physical"}
    meta = parse_header({"schema_version": "1.1", "array": {"shape": [3], "dtype": "<f4"}, "scaling": scaling})
    assert meta.scaling == Scaling(**scaling)
    assert meta.model_dump(mode="json")["scaling"] == scaling
    raw = np.array([0, 1, 4095], dtype=np.uint16)
    assert meta.scaling.to_physical(raw).tolist() == [-1024.0, -1023.5, 1023.5]
    # The rules of spec 5.10, each a HEADER_INVALID with its kind.
    cases = [
        ({**scaling, "slope": 0.0}, "rule_violation"),
        ({**scaling, "slope": "0.5"}, "wrong_type"),
        ({**scaling, "stored": "both"}, "invalid_value"),
        ({**scaling, "raw_dtype": ">u2"}, "invalid_value"),
        ({**scaling, "extra_member": 1}, "unknown_field"),
        ({k: v for k, v in scaling.items() if k != "stored"}, "missing_field"),
        ({**scaling, "stored": "raw"}, "rule_violation"),  # raw stored, but the array is <f4, not <u2
    ]
    for bad, kind in cases:
        with pytest.raises(HeaderValidationError) as info:
            parse_header({"schema_version": "1.1", "array": {"shape": [3], "dtype": "<f4"}, "scaling": bad})
        assert [p.code for p in info.value.problems] == [kind], bad
    # raw stored with the matching array type is fine; a newer minor ignores unknown scaling members.
    parse_header(
        {"schema_version": "1.1", "array": {"shape": [3], "dtype": "<u2"}, "scaling": {**scaling, "stored": "raw"}}
    )
    newer = parse_header({"schema_version": "1.4", "scaling": {**scaling, "from_1_4": True}})
    assert newer.scaling == Scaling(**scaling)


PYDANTIC_WORDS = (
    "Input should",
    "Field required",
    "Value error",
    "String should",
    "dictionary",
    "pydantic",
    "List should",
)


@pytest.mark.parametrize(
    ("bad", "loc", "kind", "text"),
    [
        ({"spatial": {"spacing": ["a", 1.0]}}, "spatial.spacing.0", "wrong_type", "expected a number, got a string"),
        (
            {"array": {"shape": [1.5], "dtype": "<i2"}},
            "array.shape.0",
            "wrong_type",
            "expected an integer, got a number",
        ),
        ({"array": {"shape": [2], "dtype": "<x2"}}, "array.dtype", "invalid_value", "must be one of '|b1'"),
        (
            {"array": {"shape": [2], "dtype": 100.0}},
            "array.dtype",
            "wrong_type",
            "must be one of '|b1'",
        ),  # not a string
        (
            {"scaling": {"slope": 2.0, "intercept": 0.0, "stored": True, "raw_dtype": "<i2"}},
            "scaling.stored",
            "wrong_type",
            "one of",
        ),
        ({"bbox": {"bboxes": [[[1, 2]]], "labels": [1.5]}}, "bbox.labels.0", "wrong_type", "a string or an integer"),
        ({"writer": {"name": "", "version": "1"}}, "writer.name", "out_of_range", "must not be empty"),
        ({"writer": {"name": "x"}}, "writer.version", "missing_field", "mandatory member is missing"),
        ({"stats": {"std": -1.0}}, "stats.std", "out_of_range", "must be at least 0"),
        ({"is_seg": 1}, "is_seg", "wrong_type", "expected a boolean"),
        ({"extra": []}, "extra", "wrong_type", "expected an object, got an array"),
        ({"colour": "red"}, "colour", "unknown_field", "unknown member"),
        ({"spatial": {"spacing": [0.0, 1.0]}}, "spatial.spacing.0", "out_of_range", "must be greater than 0"),
        ({"spatial": {"spacing": [math.nan, 1.0]}}, "spatial.spacing.0", "not_finite", "not a finite number"),
        ({"spatial": {"origin": [math.inf, 1.0]}}, "spatial.origin.0", "not_finite", "not finite"),
    ],
)
def test_problems_are_worded_in_the_specs_terms(bad: dict[str, object], loc: str, kind: str, text: str) -> None:
    with pytest.raises(HeaderValidationError) as info:
        parse_header({"schema_version": "1.1", **bad})
    problems = info.value.problems
    assert [(p.loc, p.code) for p in problems] == [(loc, kind)], problems
    assert text in problems[0].message
    assert not any(word in str(info.value) for word in PYDANTIC_WORDS), str(info.value)


def test_nan_spacing_given_to_the_api_says_not_finite() -> None:
    from mlarray import MLArray

    with pytest.raises(HeaderValidationError, match="not a finite number") as info:
        MLArray(np.zeros((2, 2, 2)), spacing=[math.nan, 1.0, 1.0])
    assert "binary64" not in str(info.value)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400])
def test_a_number_beyond_binary64_does_not_hide_the_headers_other_problems(number: str) -> None:
    import json

    text = (
        '{"schema_version": "1.1", "is_seg": "yes", "stats": {"min": 5, "max": 1}, '
        f'"spatial": {{"spacing": [{number}, 1.0]}}, "extra": {{"x": [{number}]}}}}'
    )
    with pytest.raises(HeaderValidationError) as info:
        parse_header(json.loads(text))
    found = {(p.loc, p.code) for p in info.value.problems}
    assert found == {
        ("spatial.spacing.0", "not_finite"),
        ("extra.x.0", "not_finite"),
        ("is_seg", "wrong_type"),
        ("stats", "rule_violation"),
    }, found
    assert [p.code for p in info.value.problems][:2] == ["not_finite", "not_finite"]  # the numbers come first


_ARRAY = {"shape": [2, 3, 4], "dtype": "<i2"}


@pytest.mark.parametrize(
    ("member", "loc"),
    [
        ({"array": _ARRAY, "spatial": {"axis_units": ["mm", "mm"]}}, "spatial.axis_units"),
        ({"array": _ARRAY, "spatial": {"axis_labels": ["spatial", "spatial"]}}, "spatial.axis_labels"),
        (
            {"array": _ARRAY, "layout": {"chunk_size": [2, 3], "block_size": [1, 1], "strategy": "manual"}},
            "layout.chunk_size",
        ),
        ({"layout": {"chunk_size": [2], "block_size": [1], "strategy": "manual"}}, "layout"),
        ({"array": _ARRAY, "bbox": {"bboxes": [[[0, 1], [0, 1]]]}}, "bbox.bboxes"),
    ],
)
def test_rules_across_members_name_the_member_they_concern(member: dict[str, object], loc: str) -> None:
    """They were reported at the root (`header` in the CLI) where the other rules give a path."""
    with pytest.raises(HeaderValidationError) as info:
        parse_header({"schema_version": "1.1", **member})
    assert [(p.loc, p.code) for p in info.value.problems] == [(loc, "rule_violation")]
