package main

import (
	"os"
	"strings"
	"testing"
)

// TestTaskfilePlainScalars: every unquoted value in Taskfile.yml is a
// valid YAML plain scalar, so that `go tool task` can read the file. An
// unquoted ": " inside a desc (d76b467) broke every task, `task bench`
// included, and nothing noticed: the suite runs .ci/test without building
// the task runner (minutes on a fresh machine). A value with ": " or " #"
// in it must be quoted.
func TestTaskfilePlainScalars(t *testing.T) {
	b, err := os.ReadFile("Taskfile.yml")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		s := strings.TrimSpace(line)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		value := strings.TrimPrefix(s, "- ") // a list item
		if k, v, ok := strings.Cut(value, ": "); ok && isYAMLKey(k) {
			value = v // key: value
		} else if isYAMLKey(strings.TrimSuffix(value, ":")) {
			continue // "key:" opens a block
		}
		if value == "" || strings.ContainsAny(value[:1], `"'|>{[&*!`) {
			continue // quoted, a block scalar, a flow collection, an anchor or a tag
		}
		if strings.Contains(value, ": ") || strings.Contains(value, " #") || strings.HasSuffix(value, ":") {
			t.Errorf("Taskfile.yml:%d: unquoted value %q holds \": \", \" #\" or a final ':'; quote it", i+1, value)
		}
	}
}

// isYAMLKey reports whether k is a plain mapping key as the Taskfile
// writes them: letters, digits, '_', '-', '.' and ':' (task names such as
// bench:mesh).
func isYAMLKey(k string) bool {
	return k != "" && strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:") == ""
}
