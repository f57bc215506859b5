package hostsfile

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestInPlaceWriteFailureKeepsOtherLines: where the file must be rewritten
// in place (a bind mount, a read-only directory), a write that fails
// midway (a full disk; here the file size limit, RLIMIT_FSIZE, which makes
// write(2) fail with EFBIG past half the lines) must not cost the lines
// outside the block, and the next Write must find them. The write runs in
// a child process, as the limit applies to the whole process.
func TestInPlaceWriteFailureKeepsOtherLines(t *testing.T) {
	if p := os.Getenv("HOSTSFILE_FSIZE_PATH"); p != "" {
		inPlaceChild(p)
		return
	}
	withBlock, err := Edit([]byte(others), Lines(entries))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		start   string
		entries []Entry
		wantErr error // from the child's Write
		want    string
	}{
		{name: "adding the block fails: the file is as it was", start: others, entries: entries, wantErr: syscall.EFBIG, want: others},
		{name: "removing the block writes nothing new: it works", start: string(withBlock), entries: nil, want: others},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hosts")
			if err := os.WriteFile(p, []byte(tc.start), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^TestInPlaceWriteFailureKeepsOtherLines$", "-test.count=1")
			cmd.Env = append(os.Environ(), "HOSTSFILE_FSIZE_PATH="+p,
				"HOSTSFILE_FSIZE_LIMIT="+strconv.Itoa(len(others)/2),
				"HOSTSFILE_FSIZE_ADD="+strconv.FormatBool(tc.entries != nil))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			switch {
			case err == nil && tc.wantErr != nil:
				t.Fatalf("child's Write: got no error, want %v\n%s", tc.wantErr, out)
			case errors.As(err, &ee) && ee.ExitCode() == 3 && tc.wantErr != nil:
				// Write failed with EFBIG, as it should.
			case err != nil && (tc.wantErr == nil || !errors.As(err, &ee) || ee.ExitCode() != 3):
				t.Fatalf("child: %v, want %v\n%s", err, tc.wantErr, out)
			}
			if got := readString(t, p); got != tc.want {
				t.Fatalf("after the child's Write:\n got %q\nwant %q", got, tc.want)
			}
			// Without the limit, the next Write builds on the intact lines.
			f, err := New(Config{Path: p})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Write(entries); err != nil {
				t.Fatal(err)
			}
			if got := readString(t, p); got != string(withBlock) {
				t.Fatalf("the next Write:\n got %q\nwant %q", got, withBlock)
			}
		})
	}
}

// inPlaceChild runs one Write of the test above under a file size limit,
// with the temporary file refused (EROFS) so that Write goes in place. It
// exits 0 when Write succeeded, 3 when it failed with EFBIG, 4 otherwise.
func inPlaceChild(path string) {
	limit, err := strconv.ParseUint(os.Getenv("HOSTSFILE_FSIZE_LIMIT"), 10, 64)
	if err != nil {
		fmt.Println(err)
		os.Exit(4)
	}
	f, err := New(Config{Path: path})
	if err != nil {
		fmt.Println(err)
		os.Exit(4)
	}
	f.createTemp = func(dir, _ string) (*os.File, error) {
		return nil, &os.PathError{Op: "open", Path: dir, Err: syscall.EROFS}
	}
	var es []Entry
	if os.Getenv("HOSTSFILE_FSIZE_ADD") == "true" {
		es = entries
	}
	// Go ignores SIGXFSZ, so write(2) past the limit returns EFBIG.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println(err)
		os.Exit(4)
	}
	err = f.Write(es)
	fmt.Println("Write:", err)
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, syscall.EFBIG):
		os.Exit(3)
	}
	os.Exit(4)
}
