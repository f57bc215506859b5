package forward

import (
	"errors"
	"fmt"
	"io"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Handoff wire protocol, spoken on a peer ambassador's data port.
//
//	client → server: "AMB" | version (1) | n (1..63) | n bytes service name
//	server → client: 1 status byte (handoffStatus)
//
// The server dials the local service before it replies, so the client learns
// of a dead backend before it starts copying and can try its next Backend.
// Both sides read with io.ReadFull on the raw conn, never through a buffer, so
// no byte past the header is consumed and the copy keeps splicing.
const (
	handoffMagic   = "AMB"
	handoffVersion = 1
	maxServiceName = 63
	handoffFixed   = len(handoffMagic) + 2 // magic, version, length
)

// handoffStatus is the server's one-byte reply to a handoff header.
type handoffStatus byte

const (
	statusOK          handoffStatus = 0
	statusUnknown     handoffStatus = 1 // lookup does not know the service
	statusUnavailable handoffStatus = 2 // the local service refused or timed out
	statusBadHeader   handoffStatus = 3 // malformed header
)

func (s handoffStatus) String() string {
	switch s {
	case statusOK:
		return "ok"
	case statusUnknown:
		return "unknown service"
	case statusUnavailable:
		return "backend unavailable"
	case statusBadHeader:
		return "bad header"
	}
	return fmt.Sprintf("status %d", byte(s))
}

// handoffError is returned by the client side when the server refuses.
type handoffError struct{ status handoffStatus }

func (e *handoffError) Error() string { return "handoff refused: " + e.status.String() }

// errBadHeader marks a malformed handoff header; the server answers it with
// statusBadHeader.
var errBadHeader = errors.New("bad handoff header")

// appendHandoff appends the handoff header naming service to b.
func appendHandoff(b []byte, service svcname.Name) ([]byte, error) {
	if !service.Valid() {
		return b, fmt.Errorf("forward: handoff: invalid service name %q", service)
	}
	b = append(b, handoffMagic...)
	b = append(b, handoffVersion, byte(len(service)))
	return append(b, service...), nil
}

// readHandoff reads exactly one handoff header from r and returns the
// service name. A malformed header gives an error wrapping errBadHeader; a
// short read gives the reader's error (io.EOF, io.ErrUnexpectedEOF, a
// timeout).
func readHandoff(r io.Reader) (svcname.Name, error) {
	var fixed [handoffFixed]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return "", err
	}
	if string(fixed[:3]) != handoffMagic {
		return "", fmt.Errorf("forward: handoff: magic %q: %w", fixed[:3], errBadHeader)
	}
	if fixed[3] != handoffVersion {
		return "", fmt.Errorf("forward: handoff: version %d: %w", fixed[3], errBadHeader)
	}
	n := int(fixed[4])
	if n == 0 || n > maxServiceName {
		return "", fmt.Errorf("forward: handoff: name length %d: %w", n, errBadHeader)
	}
	var name [maxServiceName]byte
	if _, err := io.ReadFull(r, name[:n]); err != nil {
		return "", err
	}
	s, err := svcname.Parse(string(name[:n]))
	if err != nil {
		return "", fmt.Errorf("forward: handoff: %w: %w", err, errBadHeader)
	}
	return s, nil
}
