"""Render docs/api.md from the proto and its comments (the proto is the source of truth).

    python scripts/gen_api_docs.py > docs/api.md

Reads a descriptor set compiled with source info by the protoc of grpcio-tools, so the
output depends only on the proto text. CI regenerates it and fails on a diff.
"""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "totpd/v1/totp_service.proto"

# FieldDescriptorProto.Type -> proto spelling, for scalar fields.
_SCALARS = {
    v: k.removeprefix("TYPE_").lower()
    for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()
    if k not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


def _descriptor() -> descriptor_pb2.FileDescriptorProto:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.binpb"
        well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
        args = [
            "protoc",
            f"-I{ROOT / 'protos'}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            PROTO,
        ]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return files.file[0]


def _comments(fd: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(loc.path): " ".join(
            line.strip() for line in loc.leading_comments.strip().splitlines()
        ).replace("  ", "\n\n")
        for loc in fd.source_code_info.location
        if loc.leading_comments
    }


def _type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type_name:
        name = field.type_name.lstrip(".")
        local = name.removeprefix("totpd.v1.")
        return f"[{local}](#{local.lower()})" if local != name else f"`{name}`"
    return f"`{_SCALARS[field.type]}`"


def render(fd: descriptor_pb2.FileDescriptorProto) -> str:
    comments = _comments(fd)
    out = [
        "# totpd API reference",
        "",
        f"<!-- Generated from protos/{PROTO} by scripts/gen_api_docs.py "
        "(`make docs`). Do not edit. -->",
        "",
        f"Package `{fd.package}`.",
        "",
    ]
    for si, service in enumerate(fd.service):
        out += [f"## {service.name}", "", comments.get((6, si), ""), ""]
        for mi, method in enumerate(service.method):
            req, resp = method.input_type.split(".")[-1], method.output_type.split(".")[-1]
            out += [
                f"### {method.name}",
                "",
                f"`rpc {method.name}({req}) returns ({resp})`: request "
                f"[{req}](#{req.lower()}), response [{resp}](#{resp.lower()}).",
                "",
                comments.get((6, si, 2, mi), ""),
                "",
            ]
    out += ["## Messages", ""]
    for mi, message in enumerate(fd.message_type):
        out += [f"### {message.name}", "", comments.get((4, mi), ""), ""]
        if message.field:
            out += ["| Field | Type | Description |", "|---|---|---|"]
            for fi, field in enumerate(message.field):
                label = "repeated " if field.label == field.LABEL_REPEATED else ""
                text = comments.get((4, mi, 2, fi), "").replace("\n\n", " ").replace("|", "\\|")
                out.append(f"| `{field.name}` | {label}{_type_name(field)} | {text} |")
            out.append("")
    out += ["## Enums", ""]
    for ei, enum in enumerate(fd.enum_type):
        out += [f"### {enum.name}", "", comments.get((5, ei), ""), ""]
        out += ["| Value | Number | Description |", "|---|---|---|"]
        for vi, value in enumerate(enum.value):
            text = comments.get((5, ei, 2, vi), "").replace("\n\n", " ")
            out.append(f"| `{value.name}` | {value.number} | {text} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(_descriptor()))
