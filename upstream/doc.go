// Package upstream resolves the backends of services that live outside the
// mesh: a DNS SRV record (priority and weight honoured, RFC 2782), the
// A/AAAA records of a host name, or a fixed address. It produces ordered
// lists of "ip:port" Targets and keeps them fresh at the records' TTL; it
// knows nothing about gossip, mDNS or forwarding.
//
// Queries go straight to the configured DNS servers with miekg/dns, because
// the record TTLs matter and net.Resolver does not expose them.
package upstream
