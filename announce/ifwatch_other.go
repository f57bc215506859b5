//go:build !linux

package announce

import "errors"

// ifaceWatch is Linux only (netlink); elsewhere the server lists the
// interfaces every RescanInterval.
type ifaceWatch struct{}

func newIfaceWatch() (*ifaceWatch, error) {
	return nil, errors.New("announce: watch interfaces: not on this system")
}

func (w *ifaceWatch) changes() <-chan struct{} { return nil }
func (w *ifaceWatch) run()                     {}
func (w *ifaceWatch) close()                   {}
