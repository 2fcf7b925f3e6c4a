#!/usr/bin/env bash
# Installs stagemesh's pinned external tools (consul, jaeger, ghz, grpcurl)
# into <repo>/.tools/bin. Run through `make tools`.
#
# Every tool is built from source obtained through the Go module proxy; no
# prebuilt binaries are downloaded. Builds are cached per machine under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/stagemesh/tools/<name>-<version>/<name>
# so re-running, or running in another clone, only re-creates the links.
#
# Usage: deploy/tools/install.sh [tool ...]      (default: all tools)
# Environment:
#   STAGEMESH_ROOT        repo root to install into (default: two levels up)
#   STAGEMESH_TOOLS_CACHE cache directory (default: see above)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=${STAGEMESH_ROOT:-$(cd "$script_dir/../.." && pwd)}
# shellcheck source=versions.env
source "$script_dir/versions.env"

cache_root=${STAGEMESH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stagemesh/tools}
bin_dir="$repo_root/.tools/bin"
all_tools=(consul jaeger ghz grpcurl)

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

# Never let the go command fetch another toolchain or read stray settings:
# everything comes from the installed Go and the module proxy.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
unset GOFLAGS GOBIN

command -v go >/dev/null 2>&1 || die "the Go toolchain is required (go not found on PATH)"

# Temporary files of this run; removed on exit, including on failure/^C.
tmp_paths=()
building=""
cleanup() {
  local rc=$? p
  if [[ $rc -ne 0 && -n $building ]]; then
    if [[ $rc -eq 130 || $rc -eq 143 ]]; then
      printf '[tools] ERROR: building %s was interrupted. Nothing was cached.\n' "$building" >&2
    else
      printf '[tools] ERROR: building %s failed (exit %d); see the output above. Nothing was cached.\n' "$building" "$rc" >&2
    fi
  fi
  for p in "${tmp_paths[@]+"${tmp_paths[@]}"}"; do
    [[ -e $p ]] || continue
    chmod -R u+w "$p" 2>/dev/null || true
    rm -rf "$p"
  done
}
trap cleanup EXIT

# Removes this run's temporary build directories now, except the one given
# (keeps /tmp small while later tools build).
drop_tmp_paths_except() {
  local keep=$1 p kept=()
  for p in "${tmp_paths[@]+"${tmp_paths[@]}"}"; do
    if [[ $p == "$keep" ]]; then kept+=("$p"); continue; fi
    chmod -R u+w "$p" 2>/dev/null || true
    rm -rf "$p"
  done
  tmp_paths=("${kept[@]+"${kept[@]}"}")
}
trap 'exit 130' INT
trap 'exit 143' TERM

version_of() {
  case $1 in
    consul) echo "$CONSUL_VERSION" ;;
    jaeger) echo "$JAEGER_VERSION" ;;
    ghz) echo "$GHZ_VERSION" ;;
    grpcurl) echo "$GRPCURL_VERSION" ;;
    *) die "unknown tool '$1' (known: ${all_tools[*]})" ;;
  esac
}

# Each build_<tool> function receives an empty output directory and must
# leave the binary <outdir>/<tool> there, or fail.

build_ghz() {
  local out=$1
  GOBIN="$out" GOFLAGS=-buildvcs=false go install -trimpath \
    -ldflags "-s -w -X main.version=${GHZ_VERSION#v}" \
    "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
}

build_grpcurl() {
  local out=$1
  GOBIN="$out" GOFLAGS=-buildvcs=false go install -trimpath \
    -ldflags "-s -w -X main.version=$GRPCURL_VERSION" \
    "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
}

# Jaeger's go.mod has a replace directive, which `go install module@version`
# rejects. Build inside a writable copy of the module source instead: it is
# then the main module, so its go.mod/go.sum (and replace) apply as upstream
# intends.
build_jaeger() {
  local out=$1 work dir date
  work=$(mktemp -d "${TMPDIR:-/tmp}/stagemesh-jaeger.XXXXXX")
  tmp_paths+=("$work")
  dir=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [[ -n $dir && -d $dir ]] || die "go mod download did not return a source dir for jaeger@$JAEGER_VERSION"
  date=$(module_time "github.com/jaegertracing/jaeger@$JAEGER_VERSION")
  cp -R "$dir" "$work/src"
  chmod -R u+w "$work/src"
  local vpkg=github.com/jaegertracing/jaeger/internal/version
  (cd "$work/src" && GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath \
    -ldflags "-s -w -X $vpkg.latestVersion=$JAEGER_RELEASE -X $vpkg.date=$date" \
    -o "$out/jaeger" ./cmd/jaeger)
}

# Consul's go.mod also has replace directives. deploy/tools/consul is a
# small module of ours that depends on github.com/hashicorp/consul and
# assembles the CLI; its go.sum is committed, so the build is read-only
# with respect to dependencies (-mod=readonly fails if go.sum is stale).
build_consul() {
  local out=$1 src="$script_dir/consul" work date
  grep -Eq "^[[:space:]]*(require[[:space:]]+)?github.com/hashicorp/consul[[:space:]]+$CONSUL_VERSION\$" "$src/go.mod" ||
    die "deploy/tools/consul/go.mod does not require github.com/hashicorp/consul $CONSUL_VERSION (versions.env); update both together"
  work=$(mktemp -d "${TMPDIR:-/tmp}/stagemesh-consul.XXXXXX")
  tmp_paths+=("$work")
  cp "$src/go.mod" "$src/go.sum" "$src"/*.go "$work/"
  date=$(module_time "github.com/hashicorp/consul@$CONSUL_VERSION")
  (cd "$work" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
    -ldflags "-s -w -X github.com/hashicorp/consul/version.BuildDate=$date" \
    -o "$out/consul" .)
}

# Release timestamp of a module version as recorded by the proxy (used as
# the build date stamped into binaries, so builds are reproducible).
module_time() {
  go list -m -json "$1" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",*$/\1/p'
}

# Builds <tool> into the cache unless it is already there. The binary is
# built in a staging directory next to the final one and moved into place
# with a single rename, so the cache never holds a partial build.
ensure_cached() {
  local tool=$1 version final stage start
  version=$(version_of "$tool")
  final="$cache_root/$tool-$version"
  if [[ -x $final/$tool ]]; then
    log "$tool $version: cached ($final)"
    return 0
  fi
  mkdir -p "$cache_root"
  stage=$(mktemp -d "$cache_root/.stage-$tool-$version.XXXXXX")
  tmp_paths+=("$stage")
  log "$tool $version: building from the Go module proxy (this can take several minutes)..."
  start=$SECONDS
  # Called plainly (not in an `if`) so that `set -e` stays in force inside.
  building="$tool $version"
  "build_$tool" "$stage"
  building=""
  [[ -x $stage/$tool ]] || die "$tool $version: build produced no binary"
  chmod 0755 "$stage"
  drop_tmp_paths_except "$stage"
  # Another install may have finished the same build meanwhile; keep theirs.
  if mv -T "$stage" "$final" 2>/dev/null; then
    log "$tool $version: built in $((SECONDS - start))s -> $final"
  elif [[ -x $final/$tool ]]; then
    log "$tool $version: built in $((SECONDS - start))s, but a concurrent install already cached it"
  else
    die "$tool $version: could not move the build into $final"
  fi
}

# Points <repo>/.tools/bin/<tool> at the cached binary (atomic replace).
link_tool() {
  local tool=$1 version target tmp
  version=$(version_of "$tool")
  target="$cache_root/$tool-$version/$tool"
  mkdir -p "$bin_dir"
  if [[ -L $bin_dir/$tool && $(readlink "$bin_dir/$tool") == "$target" ]]; then
    return 0
  fi
  tmp="$bin_dir/.$tool.$$"
  ln -sfn "$target" "$tmp"
  mv -Tf "$tmp" "$bin_dir/$tool"
  log "$tool $version: linked $bin_dir/$tool"
}

main() {
  local tools=("$@") tool
  [[ ${#tools[@]} -gt 0 ]] || tools=("${all_tools[@]}")
  for tool in "${tools[@]}"; do version_of "$tool" >/dev/null; done

  log "go: $(go version | cut -d' ' -f3-)"
  log "cache: $cache_root"
  log "bin:   $bin_dir"
  for tool in "${tools[@]}"; do
    ensure_cached "$tool"
    link_tool "$tool"
  done
  log "done: ${tools[*]} in $bin_dir"
}

main "$@"
