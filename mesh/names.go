package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/hostsfile"
)

// names publishes the name of every forwarded service with the address of
// its local listener: in a block of the --hosts file (and to the --dns
// server, which reads Lookup). The reconcile loop hands it each new list
// with Set; a goroutine writes the file once the list has been still for
// hostsfile.Debounce, so a node joining with ten services costs one write.
type names struct {
	file *hostsfile.File // nil without --hosts
	log  *slog.Logger

	mu      sync.Mutex
	cur     []hostsfile.Entry // guarded by mu; the latest list, sorted by name
	written bool              // guarded by mu; cur is what the file holds

	changed chan struct{} // 1-buffered; a dropped send is fine, the writer reads cur
	wg      sync.WaitGroup
}

func newNames(path string, log *slog.Logger) (*names, error) {
	s := &names{log: log, changed: make(chan struct{}, 1)}
	if path != "" {
		f, err := hostsfile.New(hostsfile.Config{Path: path, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("mesh: hosts: %w", err)
		}
		s.file = f
	}
	return s, nil
}

// Set records the current list; it never blocks.
func (s *names) Set(es []hostsfile.Entry) {
	s.mu.Lock()
	same := slices.Equal(s.cur, es)
	if !same {
		s.cur = slices.Clone(es)
		s.written = false
	}
	s.mu.Unlock()
	if !same {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// Lookup returns the address of a forwarded service by name (case
// insensitive). Safe for concurrent use.
func (s *names) Lookup(name string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.cur {
		if strings.EqualFold(e.Name, name) {
			return e.Addr, true
		}
	}
	return netip.Addr{}, false
}

// Entries returns a copy of the current list.
func (s *names) Entries() []hostsfile.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cur)
}

// Start runs the writer until ctx is cancelled; Close waits for it.
func (s *names) Start(ctx context.Context) {
	if s.file == nil {
		return
	}
	s.wg.Go(func() { s.writeLoop(ctx) })
}

// writeLoop writes the list Debounce after the last change, and retries a
// failed write every few seconds.
func (s *names) writeLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.changed:
			t.Reset(hostsfile.Debounce)
			continue
		case <-t.C:
		}
		s.mu.Lock()
		es, done := slices.Clone(s.cur), s.written
		s.mu.Unlock()
		if done {
			continue
		}
		if err := s.file.Write(es); err != nil {
			if !failing {
				s.log.Warn("hosts file not updated, retrying", "file", s.file.Path(), "err", err)
			}
			failing = true
			t.Reset(5 * time.Second)
			continue
		}
		if failing {
			s.log.Info("hosts file updated again", "file", s.file.Path())
		}
		failing = false
		s.mu.Lock()
		if slices.Equal(s.cur, es) {
			s.written = true
		}
		s.mu.Unlock()
		s.log.Info("hosts file updated", "file", s.file.Path(), "names", len(es))
	}
}

// Close stops the writer and takes the block out of the file, so that no
// name keeps pointing at a listener that is going away. Call it once, after
// the writer's ctx is cancelled.
func (s *names) Close() error {
	if s.file == nil {
		return nil
	}
	s.wg.Wait()
	if err := s.file.Remove(); err != nil {
		return fmt.Errorf("mesh: remove the block from %s: %w", s.file.Path(), err)
	}
	s.log.Info("hosts file block removed", "file", s.file.Path())
	return nil
}
