package hostsfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Config names the file to keep the block in.
type Config struct {
	// Path of the hosts file, e.g. /etc/hosts. Required. A missing file
	// is created (mode 0644) on the first Write with entries.
	Path string
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with no path; it does no I/O.
func DefaultConfig() Config { return Config{} }

// File keeps the ambassador block of one hosts file. Its methods are safe
// for concurrent use (writes are serialized).
type File struct {
	path string
	log  *slog.Logger

	// Seams for tests: the rename that publishes the new file, and a hook
	// run just before it (where a concurrent edit is simulated).
	rename       func(oldpath, newpath string) error
	beforeRename func()
	createTemp   func(dir, pattern string) (*os.File, error)

	mu         sync.Mutex // serializes Write
	warnedBusy bool       // guarded by mu: the in-place fallback was logged
}

// New checks cfg; it does not touch the file.
func New(cfg Config) (*File, error) {
	if cfg.Path == "" {
		return nil, errors.New("hostsfile: config: Path is empty")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &File{path: cfg.Path, log: log.With("component", "hostsfile"), rename: os.Rename, beforeRename: func() {}, createTemp: os.CreateTemp}, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// maxAttempts bounds how often Write starts over because the file changed
// while it prepared its copy.
const maxAttempts = 5

// Write makes the file's block list entries (no entries: no block). It
// reads the file, edits the block, writes a temporary file in the same
// directory with the original's mode and owner, fsyncs it, and renames it
// over the original. Just before the rename it reads the file again; if
// someone else changed it meanwhile, it starts over from their version, so
// their edit is kept. Where the file cannot be replaced by a rename (a bind
// mount, as /etc/hosts is in most containers: EBUSY) it falls back to
// rewriting the file in place, which is not atomic, and says so once.
// A file that does not need to change is not written. A path that is a
// symlink stays one: Write edits the file it points at (see target).
func (f *File) Write(entries []Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	lines := Lines(entries)
	for range maxAttempts {
		path, err := f.target()
		if err != nil {
			return err
		}
		old, st, err := read(path)
		if errors.Is(err, fs.ErrNotExist) {
			if len(lines) == 0 {
				return nil
			}
		} else if err != nil {
			return err
		}
		next, err := Edit(old, lines)
		if err != nil {
			return fmt.Errorf("hostsfile: edit %s: %w", path, err)
		}
		if st != nil && bytes.Equal(next, old) {
			return nil
		}
		tmp, err := f.writeTemp(path, next, st)
		if st != nil && (errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission)) {
			// The directory is read-only but the file may not be: systemd's
			// ReadWritePaths=/etc/hosts under ProtectSystem=strict.
			if err := f.inPlace(path, old, next, err); !errors.Is(err, errChanged) {
				return err
			}
			f.log.Debug("hosts file changed while we wrote it, merging again", "file", path)
			continue
		}
		if err != nil {
			return err
		}
		f.beforeRename()
		cur, st2, err := read(path)
		if err != nil && !(st == nil && errors.Is(err, fs.ErrNotExist)) {
			os.Remove(tmp)
			return err
		}
		if changed(old, st, cur, st2) {
			os.Remove(tmp)
			f.log.Debug("hosts file changed while we wrote it, merging again", "file", path)
			continue
		}
		err = f.rename(tmp, path)
		if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EXDEV) {
			os.Remove(tmp)
			if err := f.inPlace(path, old, next, err); !errors.Is(err, errChanged) {
				return err
			}
			f.log.Debug("hosts file changed while we wrote it, merging again", "file", path)
			continue
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("hostsfile: replace %s: %w", path, err)
		}
		syncDir(filepath.Dir(path))
		return nil
	}
	return fmt.Errorf("hostsfile: %s changed %d times while we wrote it; giving up this time", f.path, maxAttempts)
}

// target is the file Write edits: the configured path with its symlinks
// resolved, because a rename over a symlink replaces the link with a
// regular file (NixOS links /etc/hosts to /etc/static/hosts). It is
// resolved on every attempt, as the link may change. A path that does not
// exist, or a link to nothing, is written at the configured path.
func (f *File) target() (string, error) {
	p, err := filepath.EvalSymlinks(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f.path, nil
	case err != nil:
		return "", fmt.Errorf("hostsfile: resolve %s: %w", f.path, err)
	}
	return p, nil
}

// inPlace rewrites the file at path from old to content in place, after
// saying once why.
func (f *File) inPlace(path string, old, content []byte, why error) error {
	if !f.warnedBusy {
		f.warnedBusy = true
		f.log.Warn("hosts file cannot be replaced (a bind mount, or a read-only directory): rewriting it in place, which is not atomic", "file", path, "err", why)
	}
	return writeInPlace(path, old, content)
}

// Remove takes the block out of the file. Safe to call more than once.
func (f *File) Remove() error { return f.Write(nil) }

// Holds reports whether the file is as Write(entries) would leave it, so
// that Write would not touch it: its block lists exactly entries (no
// block for none). A caller checks it to notice that another program
// rewrote the file without the block. A missing file holds no entries; a
// file that cannot be read or edited (malformed markers) is an error.
func (f *File) Holds(entries []Entry) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path, err := f.target()
	if err != nil {
		return false, err
	}
	cur, _, err := read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return len(entries) == 0, nil
	}
	if err != nil {
		return false, err
	}
	next, err := Edit(cur, Lines(entries))
	if err != nil {
		return false, fmt.Errorf("hostsfile: edit %s: %w", path, err)
	}
	return bytes.Equal(next, cur), nil
}

// read returns the file's content and its stat; nil stat when it does not
// exist.
func read(path string) ([]byte, fs.FileInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("hostsfile: read: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("hostsfile: stat: %w", err)
	}
	return b, st, nil
}

// changed reports whether the file differs from what Write based its edit
// on: its content, size or modification time (the time catches an edit that
// restored the same bytes only in the rare case it matters little).
func changed(old []byte, st fs.FileInfo, cur []byte, st2 fs.FileInfo) bool {
	if (st == nil) != (st2 == nil) {
		return true
	}
	if st == nil {
		return false
	}
	return st.Size() != st2.Size() || !st.ModTime().Equal(st2.ModTime()) || !bytes.Equal(old, cur)
}

// writeTemp writes content to a new file next to path, with its mode and
// owner (0644 and ours for a new file), fsynced.
func (f *File) writeTemp(path string, content []byte, st fs.FileInfo) (name string, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	t, err := f.createTemp(dir, "."+base+".ambassador-*")
	if err != nil {
		return "", fmt.Errorf("hostsfile: temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			t.Close()
			os.Remove(t.Name())
		}
	}()
	mode := fs.FileMode(0o644)
	if st != nil {
		mode = st.Mode().Perm()
		if err := chown(t, st); err != nil {
			return "", fmt.Errorf("hostsfile: keep the owner of %s: %w", path, err)
		}
	}
	if err := t.Chmod(mode); err != nil {
		return "", fmt.Errorf("hostsfile: keep the mode of %s: %w", path, err)
	}
	if _, err := t.Write(content); err != nil {
		return "", fmt.Errorf("hostsfile: write %s: %w", t.Name(), err)
	}
	if err := t.Sync(); err != nil {
		return "", fmt.Errorf("hostsfile: fsync %s: %w", t.Name(), err)
	}
	if err := t.Close(); err != nil {
		return "", fmt.Errorf("hostsfile: close %s: %w", t.Name(), err)
	}
	return t.Name(), nil
}

// errChanged is writeInPlace's answer when the file no longer holds what
// Write based its edit on: Write starts over from the new content.
var errChanged = errors.New("hostsfile: changed while we wrote it")

// writeInPlace rewrites the file from old to content, for files that cannot
// be renamed over. It writes only from the first byte where content differs
// from old, then cuts the file to length, so the lines before the block are
// never rewritten: a reader never sees the file empty, and a write that
// fails midway (a full disk) or a kill leaves them as they were. Truncating
// first and writing everything lost them on such a failure, and the next
// attempt took what was left for the file. A reader may still see the
// block half written for a moment. It checks, through the descriptor it
// writes with, that the file still holds old (errChanged if not).
func writeInPlace(path string, old, content []byte) error {
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("hostsfile: rewrite in place: %w", err)
	}
	defer fh.Close()
	cur, err := io.ReadAll(fh)
	if err != nil {
		return fmt.Errorf("hostsfile: rewrite %s in place: read: %w", path, err)
	}
	if !bytes.Equal(cur, old) {
		return errChanged
	}
	n := 0
	for n < len(old) && n < len(content) && old[n] == content[n] {
		n++
	}
	if _, err := fh.WriteAt(content[n:], int64(n)); err != nil {
		return fmt.Errorf("hostsfile: rewrite %s in place: %w", path, err)
	}
	if err := fh.Truncate(int64(len(content))); err != nil {
		return fmt.Errorf("hostsfile: rewrite %s in place: %w", path, err)
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("hostsfile: rewrite %s in place: fsync: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("hostsfile: rewrite %s in place: %w", path, err)
	}
	return nil
}

// syncDir makes the rename durable; a failure costs durability only, so it
// is not reported.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Debounce is a sensible delay between a change of the service list and
// the write it causes: bursts (a node joining with ten services) become
// one write.
const Debounce = 200 * time.Millisecond
