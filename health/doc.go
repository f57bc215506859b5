// Package health probes local services and tells its owner when one becomes
// healthy or unhealthy. A host that announces a service checks it with a
// Checker and withdraws it from the cluster while it fails.
//
// Probe runs one check (tcp, redis, http, exec or none) against a host:port.
// A Checker runs checks for a set of Targets, each on its own ticker, applies
// Rise/Fall hysteresis and reports state flips through a callback.
//
// The package knows nothing about gossip, mDNS or forwarding: it gets targets
// as plain values through Checker.Set and reports by name.
package health
