"""The input models' shapes (``conforms``) agree with pydantic on every field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from moesif_segment_sync.pipeline.models import (
    COMPANY_SHAPE,
    USER_SHAPE,
    MoesifCompany,
    MoesifUser,
    Shape,
    conforms,
    shape_of,
)

# One value of every JSON type, and the edge cases of the strict types.
VALUES = ["text", "", 7, 0, 2.5, float("nan"), True, False, None, {}, {"k": "v"}, [], ["x"],
          2**70]


def _validates(model: type[BaseModel], record: dict) -> bool:
    try:
        model.model_validate(record)
    except ValidationError:
        return False
    return True


def _cases(model: type[BaseModel], shape: Shape, required: dict):
    for name, kinds in shape.items():
        for value in VALUES:
            yield {**required, name: value}
            if isinstance(kinds, dict):  # a nested model: each of its fields too
                for inner in kinds:
                    yield {**required, name: {inner: value}}


@pytest.mark.parametrize(("model", "shape", "required"), [
    (MoesifUser, USER_SHAPE, {"user_id": "u1"}),
    (MoesifCompany, COMPANY_SHAPE, {"company_id": "c1"}),
])
def test_a_record_conforms_exactly_when_pydantic_validates_it(model, shape, required):
    cases = list(_cases(model, shape, required))
    assert len(cases) > 50
    # A null id is the one difference: the mapping refuses it before (``_checked_id``).
    id_field = next(iter(required))
    disagreements = [case for case in cases if case[id_field] is not None
                     and conforms(case, shape) != _validates(model, case)]
    assert disagreements == []


def test_fields_of_any_type_are_not_in_the_shape():
    assert "modified_time" not in USER_SHAPE and "ttfhw" not in COMPANY_SHAPE
    assert USER_SHAPE["geo_ip"]["latitude"] == frozenset({int, float})


def test_a_field_type_with_no_json_type_is_refused_when_the_shape_is_made():
    class Odd(BaseModel):
        when: bytes | None = None

    with pytest.raises(TypeError, match="no JSON type"):
        shape_of(Odd)
