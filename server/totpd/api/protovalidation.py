"""Request validation from the proto itself: the ``buf.validate`` rules of
``totp_service.proto``, the same rules the Go, Node and Java stubs carry, checked by the
``protovalidate`` engine before any handler runs.

A violation becomes INVALID_ARGUMENT with reason ``INVALID_REQUEST`` and one
``BadRequest`` field violation per rule broken, named by the field's path (``user_id``,
``period``). Rule messages say what is expected, never what was sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import protovalidate
from google.protobuf.message import Message

from ..errors import FieldViolation

Check = Callable[[Message], list[FieldViolation]]


def _field_path(violation: Any) -> str:
    elements = violation.proto.field.elements
    return ".".join(element.field_name for element in elements) or "request"


def rules_check() -> Check:
    """A check of a request against its proto rules (one shared, caching validator)."""
    validator = protovalidate.Validator()

    def check(message: Message) -> list[FieldViolation]:
        return [
            FieldViolation(_field_path(v), v.proto.message or v.proto.rule_id)
            for v in validator.collect_violations(message)
        ]

    return check
