package mesh

import (
	"strings"
	"testing"
)

func TestMergeAnnounces(t *testing.T) {
	ann := func(specs ...string) []Announce {
		var out []Announce
		for _, s := range specs {
			a, err := ParseAnnounce(s)
			if err != nil {
				t.Fatalf("ParseAnnounce(%q): %v", s, err)
			}
			out = append(out, a)
		}
		return out
	}
	for _, tc := range []struct {
		name            string
		cur, prev, next []Announce
		want            string
	}{
		{"nothing changed", ann("redis:6379=1"), ann("redis:6379=1"), ann("redis:6379=1"), "redis:6379=127.0.0.1:1"},
		{"added to the file", ann("redis:6379=1"), ann("redis:6379=1"), ann("redis:6379=1", "pg:5432=2"), "redis:6379=127.0.0.1:1 pg:5432=127.0.0.1:2"},
		{"dropped from the file", ann("redis:6379=1", "pg:5432=2"), ann("redis:6379=1", "pg:5432=2"), ann("pg:5432=2"), "pg:5432=127.0.0.1:2"},
		{"changed in the file", ann("redis:6379=1"), ann("redis:6379=1"), ann("redis:6379=3"), "redis:6379=127.0.0.1:3"},
		// The migration case: drained at run time, and an unrelated edit
		// must not bring it back.
		{"drained at run time, unchanged in the file", nil, ann("redis:6379=1"), ann("redis:6379=1", "pg:5432=2"), "pg:5432=127.0.0.1:2"},
		{"drained at run time, changed in the file", nil, ann("redis:6379=1"), ann("redis:6379=4"), "redis:6379=127.0.0.1:4"},
		{"announced at run time only", ann("redis:6379=1", "web:80=8080"), ann("redis:6379=1"), ann("redis:6379=1"), "redis:6379=127.0.0.1:1 web:80=127.0.0.1:8080"},
		{"run-time target kept while the file is unchanged", ann("redis:6379=9"), ann("redis:6379=1"), ann("redis:6379=1"), "redis:6379=127.0.0.1:9"},
		{"names compare case-insensitively", ann("Redis:6379=1"), ann("redis:6379=1"), nil, ""},
		{"weight 0 and 1 are the same", ann("api:80=1,weight=1"), ann("api:80=1,weight=1"), []Announce{{Name: "api", Port: 80, Host: "127.0.0.1", TargetPort: 1}}, "api:80=127.0.0.1:1,weight=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range mergeAnnounces(tc.cur, tc.prev, tc.next) {
				got = append(got, a.String())
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got %q, want %q", g, tc.want)
			}
		})
	}
}
