package gossip

import "sync"

// stateReaders tracks which alive members cannot read a compressed
// push/pull state (kindStateFlate): those whose metadata lacks
// metaStateFlate, older releases. memberlist's LocalState does not say
// whom the state goes to, and a periodic push/pull's partner is any alive
// member, so a node compresses its state only while this set is empty.
// During a rolling upgrade every node sends plain states until the last
// old node is gone. The zero value is ready to use.
type stateReaders struct {
	mu    sync.Mutex
	plain map[string]bool // alive members without metaStateFlate; guarded by mu
}

// up notes member name alive, reading kindStateFlate or not (its
// metadata's metaStateFlate); memberlist reports it in NotifyJoin and
// NotifyUpdate.
func (s *stateReaders) up(name string, flate bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if flate {
		delete(s.plain, name)
		return
	}
	if s.plain == nil {
		s.plain = make(map[string]bool)
	}
	s.plain[name] = true
}

// down notes member name dead or left.
func (s *stateReaders) down(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.plain, name)
}

// allFlate reports whether every alive member reads kindStateFlate.
func (s *stateReaders) allFlate() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.plain) == 0
}
