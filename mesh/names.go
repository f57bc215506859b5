package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/hostsfile"
)

// named is one forwarded service and where a local client reaches it.
type named struct {
	Name string // lower case
	At   netip.AddrPort
}

// names publishes the name of every forwarded service with the address of
// its local listener: in a block of the --hosts file (and to the --dns
// server, which reads Lookup). The reconcile loop hands it each new list
// with Set; a goroutine writes the file once the list has been still for
// hostsfile.Debounce, so a node joining with ten services costs one write.
// Every resync it also checks that the file still holds the block, which
// another program may have rewritten the file without.
type names struct {
	file    *hostsfile.File // nil without --hosts
	dnsAddr string          // "" without --dns
	log     *slog.Logger
	dns     *dnsServer // set by Start

	mu      sync.Mutex
	cur     []named // guarded by mu; the latest list, sorted by name
	written bool    // guarded by mu; cur is what the file holds

	changed chan struct{} // 1-buffered; a dropped send is fine, the writer reads cur
	wg      sync.WaitGroup
	resync  time.Duration // how often the writer checks the block is intact; set in newNames
}

// namesResync is how often a node checks that its block is still in the
// file: a configuration manager that templates /etc/hosts, or an editor,
// writes it without the block, and names must not stay gone until the next
// service change. A check reads the file and writes nothing when intact.
const namesResync = 30 * time.Second

func newNames(path, dnsAddr string, log *slog.Logger) (*names, error) {
	s := &names{log: log, dnsAddr: dnsAddr, changed: make(chan struct{}, 1), resync: namesResync}
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
func (s *names) Set(es []named) {
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

// Lookup returns a forwarded service by name (case insensitive). Safe for
// concurrent use.
func (s *names) Lookup(name string) (named, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.cur {
		if strings.EqualFold(e.Name, name) {
			return e, true
		}
	}
	return named{}, false
}

// Start opens the --dns server and runs the file writer until ctx is
// cancelled; Close waits for it and stops the server. A DNS port in use is
// an error.
func (s *names) Start(ctx context.Context) error {
	if s.dnsAddr != "" {
		d, err := startDNS(s.dnsAddr, s.Lookup, s.log)
		if err != nil {
			return err
		}
		s.dns = d
	}
	if s.file != nil {
		// One write even if no service ever comes: a block left behind by
		// a node that was killed goes at the next start.
		select {
		case s.changed <- struct{}{}:
		default:
		}
		s.wg.Go(func() { s.writeLoop(ctx) })
	}
	return nil
}

// writeLoop writes the list Debounce after the last change, retries a
// failed write every few seconds, and writes the block again when a check
// every resync finds it gone or changed.
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
			if s.intact(es) {
				t.Reset(s.resync)
				continue
			}
			if !failing {
				s.log.Warn("hosts file block missing or changed by another program, writing it again", "file", s.file.Path())
			}
		}
		if err := s.file.Write(hostEntries(es)); err != nil {
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
		t.Reset(s.resync)
	}
}

// intact reports whether the file is as writing es would leave it. An
// unreadable or malformed file is not intact: the write that follows
// reports why.
func (s *names) intact(es []named) bool {
	ok, err := s.file.Holds(hostEntries(es))
	return err == nil && ok
}

// hostEntries is the list as the hosts file holds it: names and addresses.
func hostEntries(es []named) []hostsfile.Entry {
	out := make([]hostsfile.Entry, 0, len(es))
	for _, e := range es {
		out = append(out, hostsfile.Entry{Name: e.Name, Addr: e.At.Addr()})
	}
	return out
}

// Close stops the writer and takes the block out of the file, so that no
// name keeps pointing at a listener that is going away. Call it once, after
// the writer's ctx is cancelled.
func (s *names) Close() error {
	var errs []error
	if s.dns != nil {
		errs = append(errs, s.dns.Close())
	}
	if s.file != nil {
		s.wg.Wait()
		if err := s.file.Remove(); err != nil {
			errs = append(errs, fmt.Errorf("mesh: remove the block from %s: %w", s.file.Path(), err))
		} else {
			s.log.Info("hosts file block removed", "file", s.file.Path())
		}
	}
	return errors.Join(errs...)
}
