#!/usr/bin/env bash
# Generates the Go stubs of totpd.v1 into clients/go/totpdv1/ (gitignored: generated code is
# made at build time and never committed, so it cannot drift from the proto).
#
# Callable from anywhere, e.g. `clients/go/generate.sh` from the repo root. Needs Go and the
# project's venv (for the pinned buf CLI: `make generate` creates it). Installs the pinned
# protoc plugins into <repo>/.tools/bin when missing or of another version, then runs
# `buf generate` with the repository's buf.gen.yaml.
#
#   BUF     the buf command (default: <repo>/.venv/bin/buf)
#   GO      the go command (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

GO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$GO_DIR/../.." && pwd)"
TOOLS="$REPO_ROOT/.tools/bin"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"


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
# The repository's buf.gen.yaml says what to generate where (with the plugins above).
BUF="${BUF:-$REPO_ROOT/.venv/bin/buf}"
"$BUF" generate --template buf.gen.yaml
