#!/usr/bin/env bash
# Generates the Go stubs of totpd.v1 into clients/go/totpdv1/ (gitignored: generated code is
# made at build time and never committed, so it cannot drift from the proto).
#
# Callable from anywhere, e.g. `clients/go/generate.sh` from the repo root. Needs Go and the
# project's venv (for protoc, bundled by grpcio-tools: `make generate` creates it). Installs
# the pinned protoc plugins into <repo>/.tools/bin when missing or of another version.
#
#   PYTHON  the Python with grpcio-tools (default: <repo>/.venv/bin/python)
#   GO      the go command (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

GO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$GO_DIR/../.." && pwd)"
TOOLS="$REPO_ROOT/.tools/bin"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

MODULE="github.com/totpd/totpd/clients/go"
PROTO="totpd/v1/totp_service.proto"
GO_PACKAGE="$MODULE/totpdv1;totpdv1"
# The buf.validate schema that the API proto imports, generated into this module too, so
# the stubs need nothing from buf's own module host (only the Go module proxy is reached).
VALIDATE_PROTO="buf/validate/validate.proto"
VALIDATE_PACKAGE="$MODULE/internal/bufvalidate;bufvalidate"

# protoc-gen-go comes from the same google.golang.org/protobuf release that go.mod pins for
# the runtime (the generated code needs a runtime at least as new as its generator).
PROTOC_GEN_GO_VERSION="$(cd "$GO_DIR" && "$GO" list -m -f '{{.Version}}' google.golang.org/protobuf)"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"

# install_plugin NAME PACKAGE VERSION: go install PACKAGE@VERSION into $TOOLS unless the
# binary there already reports VERSION.
install_plugin() {
	local name="$1" package="$2" version="$3" have=""
	if [[ -x "$TOOLS/$name" ]]; then
		have="$("$TOOLS/$name" --version 2>/dev/null | awk '{print $NF}')"
	fi
	if [[ "$have" != "$version" && "v$have" != "$version" ]]; then
		echo "generate.sh: installing $name $version into $TOOLS" >&2
		GOBIN="$TOOLS" GOFLAGS="${GOFLAGS:-} -mod=mod" "$GO" install "$package@$version"
	fi
}

install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

# Regenerate from scratch so a message or service removed from the proto leaves no file behind.
rm -rf "$GO_DIR/totpdv1" "$GO_DIR/internal/bufvalidate"
mkdir -p "$GO_DIR/totpdv1" "$GO_DIR/internal/bufvalidate"
cd "$REPO_ROOT"
# grpc_tools.protoc adds its bundled google/protobuf/*.proto to the include path itself.
"$PYTHON" -m grpc_tools.protoc -I protos \
	--plugin=protoc-gen-go="$TOOLS/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$TOOLS/protoc-gen-go-grpc" \
	--go_out="$GO_DIR" --go_opt=module="$MODULE" \
	--go_opt=M"$PROTO"="$GO_PACKAGE" --go_opt=M"$VALIDATE_PROTO"="$VALIDATE_PACKAGE" \
	--go-grpc_out="$GO_DIR" --go-grpc_opt=module="$MODULE" \
	--go-grpc_opt=M"$PROTO"="$GO_PACKAGE" --go-grpc_opt=M"$VALIDATE_PROTO"="$VALIDATE_PACKAGE" \
	"protos/$PROTO" "protos/$VALIDATE_PROTO"
