package gossip

import (
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// Why this file reads memberlist's private state:
//
// memberlist v0.7.0 (the newest release) keeps each node's state (alive,
// suspect, dead, left) in nodeState.State, which shadows the embedded
// Node.State. Members() and every delegate get &nodeState.Node, whose
// State is never written, and no delegate hears of a suspicion. So the
// public API cannot tell a suspect node from an alive one, and "suspect"
// is exactly what an operator (ambassador_members{state="suspect"}) and the
// fast removal of a crashed node (suspect.go) need.
//
// nodeTable reads memberlist's own node table, Memberlist.nodes, under
// memberlist's own lock, Memberlist.nodeLock: reflect reads the unexported
// fields (reading needs no unsafe), unsafe is used only to take the lock.
// newNodeTable checks every name and type it relies on and refuses a
// layout it does not know, so a memberlist upgrade cannot make it read
// garbage: TestNodeTableLayout fails, and a running node logs a warning
// and reports no suspect state, as before. Nothing here writes to
// memberlist. No other file touches memberlist's internals.

// nodeTable reads the names and states of memberlist's nodes.
type nodeTable struct {
	lock  *sync.RWMutex // memberlist's nodeLock
	nodes reflect.Value // memberlist's nodes: []*nodeState
	name  []int         // field index of nodeState.Node.Name
	state []int         // field index of nodeState.State
}

// nodeView is one entry of memberlist's node table.
type nodeView struct {
	name  string
	state memberlist.NodeStateType
}

// newNodeTable returns a reader for ml's node table, or an error naming
// the first field whose name or type differs from memberlist v0.7.0's.
func newNodeTable(ml *memberlist.Memberlist) (*nodeTable, error) {
	if ml == nil {
		return nil, fmt.Errorf("gossip: node table: no memberlist")
	}
	v := reflect.ValueOf(ml).Elem()
	lock := v.FieldByName("nodeLock")
	if !lock.IsValid() || lock.Type() != reflect.TypeFor[sync.RWMutex]() {
		return nil, fmt.Errorf("gossip: node table: memberlist.Memberlist.nodeLock is not a sync.RWMutex")
	}
	nodes := v.FieldByName("nodes")
	if !nodes.IsValid() || nodes.Kind() != reflect.Slice || nodes.Type().Elem().Kind() != reflect.Pointer ||
		nodes.Type().Elem().Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("gossip: node table: memberlist.Memberlist.nodes is not a slice of struct pointers")
	}
	st := nodes.Type().Elem().Elem()
	if st.Name() != "nodeState" || st.PkgPath() != reflect.TypeFor[memberlist.Node]().PkgPath() {
		return nil, fmt.Errorf("gossip: node table: memberlist.Memberlist.nodes holds %s, not memberlist.nodeState", st)
	}
	state, ok := st.FieldByName("State")
	if !ok || len(state.Index) != 1 || state.Type != reflect.TypeFor[memberlist.NodeStateType]() {
		return nil, fmt.Errorf("gossip: node table: nodeState.State is not its own NodeStateType field")
	}
	node, ok := st.FieldByName("Node")
	if !ok || !node.Anonymous || node.Type != reflect.TypeFor[memberlist.Node]() {
		return nil, fmt.Errorf("gossip: node table: nodeState does not embed memberlist.Node")
	}
	name, ok := st.FieldByName("Name")
	if !ok || name.Type.Kind() != reflect.String || len(name.Index) != 2 || name.Index[0] != node.Index[0] {
		return nil, fmt.Errorf("gossip: node table: nodeState.Node.Name is not a string")
	}
	return &nodeTable{
		// The one use of unsafe: the lock's address, to take it.
		lock:  (*sync.RWMutex)(unsafe.Pointer(lock.UnsafeAddr())),
		nodes: nodes,
		name:  name.Index,
		state: state.Index,
	}, nil
}

// suspects appends the names of the nodes memberlist holds suspect to dst,
// as read does (see there for try). It reads a name only for a suspect:
// scanSuspects calls it several times a second on every node, and
// reading every name of a large cluster was most of its cost.
func (t *nodeTable) suspects(dst []string, try bool) ([]string, bool) {
	ok := t.each(try, func(s reflect.Value) {
		if memberlist.NodeStateType(s.FieldByIndex(t.state).Int()) == memberlist.StateSuspect {
			dst = append(dst, s.FieldByIndex(t.name).String())
		}
	})
	return dst, ok
}

// read appends every node's name and state to dst. With try set it does
// not wait for memberlist's lock and reports false when it is taken; a
// memberlist delegate must use try, since memberlist may hold the lock
// while it calls one.
func (t *nodeTable) read(dst []nodeView, try bool) ([]nodeView, bool) {
	ok := t.each(try, func(s reflect.Value) {
		dst = append(dst, nodeView{
			name:  s.FieldByIndex(t.name).String(),
			state: memberlist.NodeStateType(s.FieldByIndex(t.state).Int()),
		})
	})
	return dst, ok
}

// each calls f with every node state of the table under memberlist's
// read lock (with try: only if the lock is free at once, else false).
func (t *nodeTable) each(try bool, f func(s reflect.Value)) bool {
	if try {
		if !t.lock.TryRLock() {
			return false
		}
	} else {
		t.lock.RLock()
	}
	defer t.lock.RUnlock()
	for i := range t.nodes.Len() {
		if p := t.nodes.Index(i); !p.IsNil() {
			f(p.Elem())
		}
	}
	return true
}
