#!/usr/bin/env bash
# Checks that this directory is upstream go-msgpack at the version the root
# go.mod requires, minus its net/rpc codecs and nothing else (PATCHES.md):
# every upstream file kept is byte for byte upstream's, codec/msgpack.go and
# codec/rpc.go differ by exactly net-rpc.patch, that patch only deletes
# lines, and no file is here that is neither upstream's nor listed as ours.
# Upstream comes from the Go module proxy (or the module cache), checked
# against the module's recorded hash. .ci/lint runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v2.1.5
sum='h1:Ue879bPnutj/hXfmUk6s/jtIK90XxgiUIcXRl656T44=' # go.sum's line for v2.1.5 before the replace
ours=(PATCHES.md check-upstream.sh net-rpc.patch)
patched=(codec/msgpack.go codec/rpc.go)

fail=0
bad() { echo "third_party/go-msgpack: $*" >&2; fail=1; }

grep -q "^	github.com/hashicorp/go-msgpack/v2 $version\( // indirect\)\?\$" "$here/../../go.mod" ||
  bad "the root go.mod does not require github.com/hashicorp/go-msgpack/v2 $version: update this copy and check-upstream.sh together"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module, so that the root go.mod's replace does not apply.
json=$(cd "$tmp" && GOFLAGS= GOWORK=off go mod download -json "github.com/hashicorp/go-msgpack/v2@$version")
dir=$(sed -n 's/^	"Dir": "\(.*\)",$/\1/p' <<<"$json")
got=$(sed -n 's/^	"Sum": "\(.*\)",$/\1/p' <<<"$json")
[ "$got" = "$sum" ] || { bad "upstream $version has hash $got, want $sum"; exit 1; }

kept=(LICENSE go.mod go.sum)
for f in "$dir"/codec/*.go; do
  case $f in *_test.go) ;; *) kept+=("codec/$(basename "$f")") ;; esac
done
for f in "${kept[@]}"; do
  [[ " ${patched[*]} " == *" $f "* ]] && continue
  cmp -s "$dir/$f" "$here/$f" || bad "$f differs from upstream $version (or is missing)"
done
for f in "${patched[@]}"; do
  diff -u --label "a/$f" --label "b/$f" "$dir/$f" "$here/$f" || true
done >"$tmp/net-rpc.patch"
cmp -s "$tmp/net-rpc.patch" "$here/net-rpc.patch" ||
  bad "${patched[*]} differ from upstream by more or less than net-rpc.patch (regenerate it as PATCHES.md says)"
if grep -v '^+++ ' "$here/net-rpc.patch" | grep -q '^+'; then
  bad "net-rpc.patch adds lines: this copy must be upstream minus the net/rpc codecs only"
fi
listed=" ${kept[*]} ${ours[*]} "
for f in "$here"/* "$here"/.[!.]* "$here"/codec/* "$here"/codec/.[!.]*; do
  [ -e "$f" ] || continue
  name=${f#"$here"/}
  [ "$name" = codec ] && continue
  [[ $listed == *" $name "* ]] || bad "$name is neither upstream's nor listed in check-upstream.sh as ours"
done
exit $fail
