package hostsfile

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var entries = []Entry{{Name: "pg-a", Addr: netip.MustParseAddr("127.12.200.7")}, {Name: "redis", Addr: netip.MustParseAddr("127.0.0.1")}}

const others = "127.0.0.1\tlocalhost\n# a comment   \n::1 localhost ip6-localhost\n"

func newFile(t *testing.T, content string, mode os.FileMode) (*File, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hosts")
	if content != "" {
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	f, err := New(Config{Path: p})
	if err != nil {
		t.Fatal(err)
	}
	return f, p
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWriteAndRemove: the block appears after the other lines, which keep
// their bytes; the mode stays; Remove restores the file exactly.
func TestWriteAndRemove(t *testing.T) {
	f, p := newFile(t, others, 0o640)
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	got := readString(t, p)
	want := others + "# BEGIN ambassador\n" + note + "\n127.12.200.7\tpg-a\n127.0.0.1\tredis\n# END ambassador\n"
	if got != want {
		t.Fatalf("after Write:\n%q\nwant\n%q", got, want)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != others {
		t.Fatalf("after Remove:\n%q\nwant\n%q", got, others)
	}
	if err := f.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".hosts.ambassador-*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

// TestWriteUnchangedDoesNotTouch: an identical block is not rewritten (the
// inode stays), so a debounced update with nothing new costs one read.
func TestWriteUnchangedDoesNotTouch(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Fatal("an unchanged block replaced the file")
	}
}

// TestWriteKeepsOwner needs root to give the file another owner first.
func TestWriteKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the file to another user")
	}
	f, p := newFile(t, others, 0o644)
	if err := os.Chown(p, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	s := st.Sys().(*syscall.Stat_t)
	if s.Uid != 4242 || s.Gid != 4343 {
		t.Fatalf("owner %d:%d, want 4242:4343", s.Uid, s.Gid)
	}
}

// TestWriteMergesConcurrentEdit: someone edits the file after Write read it
// but before the rename; their line must survive, and the block be there.
func TestWriteMergesConcurrentEdit(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	edits := 0
	f.beforeRename = func() {
		if edits == 0 {
			edits++
			if err := os.WriteFile(p, []byte(others+"10.0.0.9 added-meanwhile\n"), 0o644); err != nil {
				t.Error(err)
			}
		}
	}
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	got := readString(t, p)
	if !strings.HasPrefix(got, others+"10.0.0.9 added-meanwhile\n# BEGIN ambassador\n") || !strings.Contains(got, "\tpg-a\n") {
		t.Fatalf("the concurrent edit or the block is missing:\n%s", got)
	}
}

// TestWriteGivesUpOnAFileThatKeepsChanging: Write does not spin forever.
func TestWriteGivesUpOnAFileThatKeepsChanging(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	n := 0
	f.beforeRename = func() {
		n++
		_ = os.WriteFile(p, []byte(others+strings.Repeat("#\n", n)), 0o644)
	}
	if err := f.Write(entries); err == nil {
		t.Fatal("Write succeeded on a file that changed every time")
	}
	if strings.Contains(readString(t, p), Begin) {
		t.Fatal("the block was written over someone else's edit")
	}
}

// TestWriteFallsBackInPlaceOnEBUSY: a bind-mounted /etc/hosts cannot be
// renamed over; the content is then written in place.
func TestWriteFallsBackInPlaceOnEBUSY(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	before, _ := os.Stat(p)
	f.rename = func(string, string) error { return &os.LinkError{Op: "rename", Err: syscall.EBUSY} }
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Fatal("in-place write replaced the inode")
	}
	if !strings.Contains(readString(t, p), "127.0.0.1\tredis\n# END ambassador\n") {
		t.Fatalf("block not written in place:\n%s", readString(t, p))
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".hosts.ambassador-*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

func TestWriteOtherRenameErrorIsReturned(t *testing.T) {
	f, _ := newFile(t, others, 0o644)
	f.rename = func(string, string) error { return &os.LinkError{Op: "rename", Err: syscall.EACCES} }
	if err := f.Write(entries); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("Write: %v, want EACCES", err)
	}
}

func TestWriteMalformedBlockIsAnError(t *testing.T) {
	f, p := newFile(t, others+Begin+"\n", 0o644)
	if err := f.Write(entries); !errors.Is(err, ErrMarkers) {
		t.Fatalf("Write: %v, want ErrMarkers", err)
	}
	if readString(t, p) != others+Begin+"\n" {
		t.Fatal("a malformed file was changed")
	}
}

func TestWriteCreatesMissingFile(t *testing.T) {
	f, p := newFile(t, "", 0)
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Remove created the file")
	}
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(readString(t, p), Begin+"\n") {
		t.Fatal("block not written to the new file")
	}
}

// TestWriteFallsBackInPlaceInReadOnlyDir: systemd's ReadWritePaths=/etc/hosts
// leaves /etc read-only, so no temporary file can be made next to it.
func TestWriteFallsBackInPlaceInReadOnlyDir(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	f.createTemp = func(dir, _ string) (*os.File, error) {
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.EROFS}
	}
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); !strings.HasPrefix(got, others+Begin) {
		t.Fatalf("block not written in place:\n%s", got)
	}
}

// TestWriteThroughSymlink: a hosts file that is a symlink (NixOS's
// /etc/hosts -> /etc/static/hosts, or a file a config tool manages
// elsewhere) stays a symlink; the block goes into the file it points at,
// and the temporary file is made next to that file, so the rename stays
// on one filesystem.
func TestWriteThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	realDir := filepath.Join(dir, "static")
	if err := os.Mkdir(realDir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(realDir, "hosts")
	if err := os.WriteFile(target, []byte(others), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hosts")
	if err := os.Symlink("static/hosts", link); err != nil {
		t.Fatal(err)
	}
	f, err := New(Config{Path: link})
	if err != nil {
		t.Fatal(err)
	}
	stillLink := func(when string) {
		t.Helper()
		st, err := os.Lstat(link)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s: %s is no longer a symlink (mode %v): the link was replaced by a regular file", when, link, st.Mode())
		}
	}

	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	stillLink("after Write")
	want := others + "# BEGIN ambassador\n" + note + "\n127.12.200.7\tpg-a\n127.0.0.1\tredis\n# END ambassador\n"
	if got := readString(t, target); got != want {
		t.Fatalf("the file the link points at, after Write:\n%q\nwant\n%q", got, want)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	stillLink("after Remove")
	if got := readString(t, target); got != others {
		t.Fatalf("the file the link points at, after Remove:\n%q\nwant\n%q", got, others)
	}
	for _, d := range []string{dir, realDir} {
		if leftovers, _ := filepath.Glob(filepath.Join(d, ".hosts.ambassador-*")); len(leftovers) > 0 {
			t.Fatalf("temporary files left behind: %v", leftovers)
		}
	}
}

// TestWriteInPlaceMergesConcurrentEdit: in a read-only directory the file
// is rewritten in place; someone's edit made after Write read the file
// must survive there too, as it does with the rename.
func TestWriteInPlaceMergesConcurrentEdit(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	edits := 0
	f.createTemp = func(dir, _ string) (*os.File, error) {
		if edits == 0 {
			edits++
			if err := os.WriteFile(p, []byte(others+"10.0.0.9 added-meanwhile\n"), 0o644); err != nil {
				t.Error(err)
			}
		}
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.EROFS}
	}
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	want := others + "10.0.0.9 added-meanwhile\n# BEGIN ambassador\n" + note + "\n127.12.200.7\tpg-a\n127.0.0.1\tredis\n# END ambassador\n"
	if got := readString(t, p); got != want {
		t.Fatalf("after Write:\n got %q\nwant %q", got, want)
	}
}

// TestHolds: Holds is true exactly when Write would not touch the file.
func TestHolds(t *testing.T) {
	f, p := newFile(t, others, 0o644)
	holds := func(step string, es []Entry, want bool) {
		t.Helper()
		if got, err := f.Holds(es); err != nil || got != want {
			t.Errorf("%s: Holds: got %v, %v; want %v", step, got, err, want)
		}
	}
	holds("no block, no entries", nil, true)
	holds("no block yet", entries, false)
	if err := f.Write(entries); err != nil {
		t.Fatal(err)
	}
	holds("after Write", entries, true)
	holds("other entries", entries[:1], false)
	if err := os.WriteFile(p, []byte(others), 0o644); err != nil {
		t.Fatal(err)
	}
	holds("block dropped by another program", entries, false)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	holds("missing file, no entries", nil, true)
	holds("missing file", entries, false)
}
