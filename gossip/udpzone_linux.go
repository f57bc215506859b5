//go:build linux

package gossip

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// zones maps IPv6 zones (interface names) to interface indexes and back
// for link-local peers, the job net.UDPConn's internal zone cache does for
// it. Interfaces come and go, so the table is read again when a name or
// index is missing or the table is older than zoneTTL (net's own cache
// lives as long).
var zones zoneTable

const zoneTTL = time.Minute

type zoneTable struct {
	mu      sync.Mutex
	read    time.Time
	byName  map[string]int
	byIndex map[int]string
}

// index is the interface index of zone: its number when it is one (an
// address may carry %3), else the interface of that name.
func (z *zoneTable) index(zone string) (int, error) {
	if n, err := strconv.Atoi(zone); err == nil && n > 0 {
		return n, nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if i, ok := z.byName[zone]; ok && time.Since(z.read) < zoneTTL {
		return i, nil
	}
	z.refresh()
	if i, ok := z.byName[zone]; ok {
		return i, nil
	}
	return 0, fmt.Errorf("zone %q: no such interface", zone)
}

// name is the interface name of index, or the index as a number when no
// interface has it (the zone then still routes an answer back).
func (z *zoneTable) name(index int) string {
	z.mu.Lock()
	defer z.mu.Unlock()
	if n, ok := z.byIndex[index]; ok && time.Since(z.read) < zoneTTL {
		return n
	}
	z.refresh()
	if n, ok := z.byIndex[index]; ok {
		return n
	}
	return strconv.Itoa(index)
}

// refresh reads the interface table, at most once a second (a zone no
// interface has must not cost a netlink dump per packet). Called with mu
// held; a failed read keeps the old table.
func (z *zoneTable) refresh() {
	if time.Since(z.read) < time.Second {
		return
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return
	}
	z.byName = make(map[string]int, len(ifs))
	z.byIndex = make(map[int]string, len(ifs))
	for _, ifc := range ifs {
		z.byName[ifc.Name] = ifc.Index
		z.byIndex[ifc.Index] = ifc.Name
	}
	z.read = time.Now()
}
