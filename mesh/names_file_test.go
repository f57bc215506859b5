package mesh

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/hostsfile"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestNamesWriter: a stale block (a node killed earlier) goes at start even
// with no service; a list is written after the debounce; Close removes it.
func TestNamesWriter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	const others = "127.0.0.1 localhost\n"
	if err := os.WriteFile(p, []byte(others+hostsfile.Begin+"\n127.9.9.9\tstale\n"+hostsfile.End+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := newNames(p, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	testutil.WaitFor(t, 5*time.Second, "the stale block to go", func() bool { return read() == others })
	s.Set([]named{{Name: "pg-a", At: netip.MustParseAddrPort("127.71.38.10:5432")}})
	testutil.WaitFor(t, 5*time.Second, "pg-a in the block", func() bool { return strings.Contains(read(), "127.71.38.10\tpg-a\n") })
	if n, ok := s.Lookup("PG-A"); !ok || n.At.Port() != 5432 {
		t.Fatalf("Lookup(PG-A) = %v, %v", n, ok)
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != others {
		t.Fatalf("after Close: %q, want %q", got, others)
	}
}
