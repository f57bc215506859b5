package mesh

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Event is one change this node saw, as GET /v1/events sends it.
type Event struct {
	// Seq numbers the events of one node run from 1, with no gaps: a
	// client that sees one missing was sent a "lagged" event instead. The
	// stream's event id is RUN-SEQ, RUN naming the run (eventHub.runLocked).
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"` // one of the Event* constants
	// Node is the member the event is about: the member that joined or
	// failed, the node whose instance of Service appeared, went or
	// changed health, this node for listener events.
	Node    string `json:"node,omitempty"`
	Service string `json:"service,omitempty"`
	// Detail says more: the listener's address, why it is busy, the new
	// health, how many events a "lagged" event stands for.
	Detail string `json:"detail,omitempty"`
}

// Event types.
const (
	EventMemberJoined     = "member-joined"     // a node seen for the first time is alive
	EventMemberLeft       = "member-left"       // a node left gracefully
	EventMemberFailed     = "member-failed"     // a node stopped answering: declared dead
	EventMemberBack       = "member-back"       // a failed or departed node is alive again
	EventServiceAppeared  = "service-appeared"  // Node offers Service now
	EventServiceWithdrawn = "service-withdrawn" // Node no longer offers Service
	EventHealthChanged    = "health-changed"    // Node's instance of Service: Detail is its new health (see eventHub.observe)
	EventListenerOpened   = "listener-opened"   // this node listens for Service on Detail
	EventListenerBusy     = "listener-busy"     // this node cannot listen for Service: Detail is why (port busy)
	EventListenerClosed   = "listener-closed"   // this node stopped listening for Service on Detail
	// EventLagged replaces events a slow subscriber could not take: Detail
	// is how many were skipped. The client should re-read /v1/members and
	// /v1/services.
	EventLagged = "lagged"
)

// subscriberBuffer bounds the events queued for one /v1/events client. A
// client that falls this far behind skips events (see EventLagged) rather
// than slowing the node or growing its memory.
const subscriberBuffer = 256

// keepEvents is how many recent events the hub keeps to replay to a client
// that (re)connects with a Seq (Last-Event-ID, or ?since=N); fewer than
// subscriberBuffer, so a replay always fits a new subscriber's queue.
const keepEvents = 128

// eventHub turns snapshots of the node's state into change events and fans
// them out to subscribers. Its zero value is ready to use; close ends every
// subscription. Safe for concurrent use. It sends on subscriber channels
// with mu held, but never blocks there: a send happens only when the
// buffer has room (a new subscriber's replay always fits), so no reader
// can stall the reconcile loop that publishes.
type eventHub struct {
	mu     sync.Mutex
	seq    uint64                   // guarded by mu; last Seq handed out
	run    string                   // guarded by mu; see runLocked
	subs   map[*subscriber]struct{} // guarded by mu
	closed bool                     // guarded by mu
	primed bool                     // guarded by mu; last holds a first snapshot
	recent []Event                  // guarded by mu; the last keepEvents events, for replay
	last   eventState               // guarded by mu; what the previous observe saw
}

// subscriber is one /v1/events client.
type subscriber struct {
	ch     chan Event // buffer subscriberBuffer; closed by unsubscribe or close
	missed uint64     // guarded by eventHub.mu; events dropped since the last delivered one
}

// eventState is what the hub compares from one observation to the next.
type eventState struct {
	self      string               // this node: the Node of listener events
	members   map[string]string    // node → "alive", "dead" or "left"
	instances map[[2]string]bool   // {service, node} pairs in the catalog
	health    map[[2]string]string // {service, node} → health; see eventHub.observe
	listeners map[string]string    // service → "listening addr" or "error msg"
}

// runLocked returns the token that names this run of the node in the
// stream's event ids (RUN-SEQ), drawn at random on first use. Seq starts
// again at 1 when the node restarts: without the run in the id, a browser
// reconnecting with the Last-Event-ID of the previous run would be sent
// the new run's events after that Seq only (none, when it is higher than
// any yet), and miss its first ones.
func (h *eventHub) runLocked() string {
	if h.run == "" {
		h.run = strconv.FormatUint(rand.Uint64()|1<<63, 36)
	}
	return h.run
}

// resume subscribes a client that last saw the event id id (Last-Event-ID,
// or ?since=): RUN-SEQ as the stream sends it, or a bare SEQ (the form
// before runs were named, and ?since=N). It returns the subscriber and the
// run for the ids. An id of this run, or a bare Seq this run has reached,
// resumes after that Seq; one of another run, or a bare Seq higher than
// any of this run (so from a run before a restart), replays the kept
// events of this run from its start; anything else, or none, gives only
// the events from now on.
func (h *eventHub) resume(id string) (*subscriber, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	run := h.runLocked()
	idRun, seq, named := strings.Cut(id, "-")
	if !named {
		idRun, seq = "", idRun
	}
	after, err := strconv.ParseUint(seq, 10, 64)
	replay := err == nil && (!named || idRun != "")
	if replay && (named && idRun != run || after > h.seq) {
		after = 0
	}
	return h.subscribeLocked(after, replay), run
}

// subscribe adds a subscriber; the caller must unsubscribe it. With
// replay, the kept recent events numbered after after are queued first
// (after a "lagged" event if some of those are no longer kept), so a
// client that reconnects with its last Seq misses nothing. After close the
// channel comes back closed.
func (h *eventHub) subscribe(after uint64, replay bool) *subscriber {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subscribeLocked(after, replay)
}

// subscribeLocked is subscribe with h.mu held.
func (h *eventHub) subscribeLocked(after uint64, replay bool) *subscriber {
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	if h.closed {
		close(s.ch)
		return s
	}
	if h.subs == nil {
		h.subs = map[*subscriber]struct{}{}
	}
	h.subs[s] = struct{}{}
	if replay && after < h.seq {
		if len(h.recent) > 0 && h.recent[0].Seq > after+1 {
			lost := h.recent[0].Seq - after - 1
			s.ch <- Event{Seq: h.recent[0].Seq - 1, Time: h.recent[0].Time, Type: EventLagged, Detail: strconv.FormatUint(lost, 10)}
		}
		for _, e := range h.recent {
			if e.Seq > after {
				s.ch <- e
			}
		}
	}
	return s
}

func (h *eventHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// close ends every subscription, so the event streams return and the
// status API can shut down; later subscriptions end at once.
func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		close(s.ch)
	}
	h.subs = nil
}

// publishLocked numbers e and queues it for every subscriber without ever
// blocking: a full queue skips the event and counts it, and once there is
// room again the subscriber gets one "lagged" event before the next, in
// the order the events happened.
//
// The lagged event carries the Seq of the last event it stands for, so
// Seq stays gap-free for every subscriber and a reconnect resumes after it.
func (h *eventHub) publishLocked(e Event) {
	if len(h.recent) == keepEvents {
		h.recent = append(h.recent[:0], h.recent[1:]...)
	}
	h.recent = append(h.recent, e)
	for s := range h.subs {
		if s.missed > 0 {
			if len(s.ch) >= cap(s.ch)-1 { // room for the lagged event and e
				s.missed++
				continue
			}
			s.ch <- Event{Seq: e.Seq - 1, Time: e.Time, Type: EventLagged, Detail: strconv.FormatUint(s.missed, 10)}
			s.missed = 0
		}
		select {
		case s.ch <- e:
		default:
			s.missed++
		}
	}
}

// observe compares st with the previous observation and publishes what
// changed. The first observation only sets the baseline.
func (h *eventHub) observe(st eventState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.primed {
		h.primed, h.last = true, st
		return
	}
	t := time.Now().UTC()
	emit := func(typ, node, service, detail string) {
		h.seq++
		h.publishLocked(Event{Seq: h.seq, Time: t, Type: typ, Node: node, Service: service, Detail: detail})
	}
	for _, name := range slices.Sorted(maps.Keys(st.members)) {
		was, ok := h.last.members[name]
		is := st.members[name]
		// A suspect is still alive to memberlist: alive → suspect → dead is
		// a failure, suspect → alive (refuted) no event at all.
		if was == "suspect" {
			was = "alive"
		}
		if is == "suspect" {
			is = "alive"
		}
		switch {
		case is == was:
		case is == "alive" && !ok:
			emit(EventMemberJoined, name, "", "")
		case is == "alive":
			emit(EventMemberBack, name, "", "")
		case is == "left":
			emit(EventMemberLeft, name, "", "")
		case is == "dead" && (was == "alive" || !ok):
			emit(EventMemberFailed, name, "", "")
		}
	}
	// Instances: withdrawals first, so a move reads as "gone from a, on b".
	for _, k := range sortedPairs(h.last.instances) {
		if !st.instances[k] {
			emit(EventServiceWithdrawn, k[1], k[0], "")
		}
	}
	for _, k := range sortedPairs(st.instances) {
		if !h.last.instances[k] {
			emit(EventServiceAppeared, k[1], k[0], "")
		}
	}
	// Health: this node's own instances are passing, failing,
	// pending or unchecked, and each change is an event, the first check
	// too. A peer's are passing (in its catalog entry's Services) or
	// failing (in Down): an event when an instance the catalog already
	// listed flips. It also reads as service-withdrawn or -appeared, since
	// only passing instances are routed to; a peer's service that never
	// passed its check makes no event.
	for _, k := range sortedPairs(st.health) {
		was, is := h.last.health[k], st.health[k]
		// A peer's instance that is new to the catalog is an appearance,
		// not a health change.
		if is != was && (k[1] == st.self || was != "") {
			emit(EventHealthChanged, k[1], k[0], is)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(h.last.listeners)) {
		if _, ok := st.listeners[name]; !ok {
			// Detail is the address it listened on; none if it never could.
			if state, addr, _ := strings.Cut(h.last.listeners[name], " "); state == forward.StateListening {
				emit(EventListenerClosed, st.self, name, addr)
			} else {
				emit(EventListenerClosed, st.self, name, "")
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.listeners)) {
		was, is := h.last.listeners[name], st.listeners[name]
		if is == was {
			continue
		}
		state, detail, _ := strings.Cut(is, " ")
		if state == forward.StateListening {
			emit(EventListenerOpened, st.self, name, detail)
		} else {
			emit(EventListenerBusy, st.self, name, detail)
		}
	}
	h.last = st
}

// noteChanges takes a snapshot of the members, the catalog, this node's
// health and its listeners (catalog: the cluster's, read by the caller)
// and publishes what changed since the last one.
// The reconcile loop calls it after every catalog change, health flip and
// listener update. It does no I/O. It reports whether the node is steady:
// every member it knows is alive (none waits to be forgotten, which no
// cluster change announces) and every listener listens (none waits for a
// retry).
func (n *Node) noteChanges(catalog []gossip.Entry) (steady bool) {
	steady = true
	st := eventState{self: n.name, members: map[string]string{}, instances: map[[2]string]bool{}, health: map[[2]string]string{}, listeners: map[string]string{}}
	for _, m := range n.cluster.Members() {
		st.members[m.Name] = m.State
		steady = steady && m.State == "alive"
	}
	for _, e := range catalog {
		for _, s := range e.Services {
			st.instances[[2]string{s.Name.String(), e.Node}] = true
			if e.Node != n.name {
				st.health[[2]string{s.Name.String(), e.Node}] = "passing"
			}
		}
		if e.Node != n.name {
			for _, s := range e.Down {
				st.health[[2]string{s.Name.String(), e.Node}] = "failing"
			}
		}
	}
	v := n.view()
	for _, a := range v.announces {
		st.health[[2]string{a.Name.Lower().String(), n.name}] = v.health(a.Name)
	}
	for _, ls := range n.proxy.Status() {
		if ls.State == forward.StateListening {
			st.listeners[ls.Service] = ls.State + " " + ls.Listen
		} else {
			st.listeners[ls.Service] = ls.State + " " + ls.Err
			steady = false
		}
	}
	n.events.observe(st)
	return steady
}

// health is the state of this node's own announcement name, as
// InstanceView.Health describes it.
func (v localView) health(n svcname.Name) string {
	name := n.Lower().String()
	switch {
	case v.check(n).Kind == health.KindNone:
		return "unchecked"
	case v.passing(n):
		return "passing"
	}
	if _, known := v.healthy[name]; known {
		return "failing"
	}
	return "pending"
}

// eventWriteWait bounds how long one write of the event stream may wait
// for the client to take it. A client that reads nothing for that long
// with the socket's buffers full (a watch paused with Ctrl-S, a hung
// script) is cut off: it would otherwise keep a goroutine and a slot of
// the status API for good, and hold the node's shutdown (which waits for
// the API's connections) until the shutdown budget ran out. A browser
// reconnects with Last-Event-ID and is told what it missed.
const eventWriteWait = 5 * time.Second

// serveEvents is GET /v1/events: a server-sent event stream, one "data:"
// line of JSON (an Event) per event, with RUN-SEQ as its id (RUN names
// this run of the node, see eventHub.runLocked). It starts with the events
// that happen from then on, or, with a Last-Event-ID header or ?since=ID,
// with the kept recent events after that one (of this run's, from its
// start when ID is from another run; see eventHub.resume). A comment line
// every 15s keeps proxies from closing an idle stream. The stream ends when
// the client goes or the node stops.
func (n *Node) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming is not supported here"))
		return
	}
	// A browser's EventSource sends Last-Event-ID when it reconnects;
	// ?since=ID asks for the kept events after ID on a first connect.
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("since")
	}
	sub, run := n.events.resume(last)
	defer n.events.unsubscribe(sub)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	// Every write, and the end of the stream that net/http writes after
	// this returns, gets eventWriteWait from when it starts.
	rc := http.NewResponseController(w)
	wait := func() { _ = rc.SetWriteDeadline(time.Now().Add(eventWriteWait)) }
	defer wait()
	wait()
	w.WriteHeader(http.StatusOK)
	// retry: how long a browser's EventSource waits before reconnecting.
	fmt.Fprintf(w, "retry: 2000\n: node %s\n\n", n.name)
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			wait()
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case e, ok := <-sub.ch:
			if !ok {
				return
			}
			wait()
			b, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "id: %s-%d\ndata: %s\n\n", run, e.Seq, b); err != nil {
				return
			}
			// Send what is queued in one write.
			for more := true; more; {
				select {
				case e, ok := <-sub.ch:
					if !ok {
						fl.Flush()
						return
					}
					b, _ := json.Marshal(e)
					fmt.Fprintf(w, "id: %s-%d\ndata: %s\n\n", run, e.Seq, b)
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// Watch follows the event stream of the node at addr, calling fn for each
// event until ctx ends, the node stops (nil error), or fn returns an error.
// With recent, the node's kept recent events (up to 128) come first.
func Watch(ctx context.Context, addr string, recent bool, fn func(Event) error) error {
	hp, err := ParseAddr(addr, "127.0.0.1")
	if err != nil {
		return fmt.Errorf("mesh: status api address: %w", err)
	}
	path := "/v1/events"
	if recent {
		path += "?since=0"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hp+path, nil)
	if err != nil {
		return fmt.Errorf("mesh: events: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mesh: is a node running? status api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mesh: status api %s/v1/events: %s", hp, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue // id, retry, comments and the blank separators
		}
		var e Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("mesh: events from %s: %w", hp, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("mesh: events from %s: %w", hp, err)
	}
	return nil
}

func sortedPairs[V any](m map[[2]string]V) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return keys
}
