#!/usr/bin/env bash
# Checks that this directory is upstream urfave/cli at the version the root
# go.mod requires, plus ambassador's patch and nothing else (PATCHES.md):
# every upstream file kept is byte for byte upstream's, help.go differs by
# exactly help.go.patch, and no file is here that is neither upstream's nor
# listed as ours. Upstream comes from the Go module proxy (or the module
# cache), checked against the module's recorded hash. .ci/lint runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v2.27.7
sum='h1:bH59vdhbjLv3LAvIu6gd0usJHgoTTPhCFib8qqOwXYU=' # go.sum's line for v2.27.7 before the replace
ours=(PATCHES.md check-upstream.sh help.go.patch help_notemplate.go)

fail=0
bad() { echo "third_party/urfave-cli: $*" >&2; fail=1; }

grep -q "^	github.com/urfave/cli/v2 $version\$" "$here/../../go.mod" ||
  bad "the root go.mod does not require github.com/urfave/cli/v2 $version: update this copy and check-upstream.sh together"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module, so that the root go.mod's replace does not apply.
json=$(cd "$tmp" && GOFLAGS= GOWORK=off go mod download -json "github.com/urfave/cli/v2@$version")
dir=$(sed -n 's/^	"Dir": "\(.*\)",$/\1/p' <<<"$json")
got=$(sed -n 's/^	"Sum": "\(.*\)",$/\1/p' <<<"$json")
[ "$got" = "$sum" ] || { bad "upstream $version has hash $got, want $sum"; exit 1; }

kept=(LICENSE go.mod go.sum)
for f in "$dir"/*.go; do
  case $f in *_test.go) ;; *) kept+=("$(basename "$f")") ;; esac
done
for f in "${kept[@]}"; do
  [ "$f" = help.go ] && continue
  cmp -s "$dir/$f" "$here/$f" || bad "$f differs from upstream $version (or is missing)"
done
diff -u --label a/help.go --label b/help.go "$dir/help.go" "$here/help.go" >"$tmp/help.go.patch" || true
cmp -s "$tmp/help.go.patch" "$here/help.go.patch" ||
  bad "help.go differs from upstream by more or less than help.go.patch (diff -u --label a/help.go --label b/help.go UPSTREAM/help.go help.go)"
for f in "$here"/* "$here"/.[!.]*; do
  [ -e "$f" ] || continue
  name=$(basename "$f")
  if [[ " ${kept[*]} ${ours[*]} " != *" $name "* ]]; then
    bad "$name is neither upstream's nor listed in check-upstream.sh as ours"
  fi
done
exit $fail
