// Package source says who sent an HTTP request: the address a per-source limit counts
// and a refusal's log line names. It is the peer's address (RemoteAddr), unless the peer
// is a proxy the operator trusts (api.trusted_proxies), in which case it is the client
// that the proxies say they forwarded: the right-most X-Forwarded-For address that is not
// itself a trusted proxy.
//
// Only the right end of X-Forwarded-For is believed, and only as far as trusted proxies
// wrote it: each proxy appends the address of its own peer, so the entries to the left of
// the first untrusted one were written by that client, who can write anything. A request
// whose peer is not a trusted proxy is judged by its peer alone, whatever it sends.
package source

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// maxHops bounds the X-Forwarded-For entries read from the right: no chain of trusted
// proxies is that long, and the work per request stays bounded whatever the header holds.
const maxHops = 32

// Proxies is the set of trusted proxies. The zero value trusts none: every request's
// source is its peer.
type Proxies struct {
	nets []netip.Prefix
}

// NewProxies trusts the peers in nets.
func NewProxies(nets []netip.Prefix) Proxies {
	p := Proxies{nets: make([]netip.Prefix, len(nets))}
	for i, n := range nets {
		p.nets[i] = n.Masked()
	}
	return p
}

// ParseCIDR reads one api.trusted_proxies entry: a CIDR (10.0.0.0/8, fd00::/8), or a
// single address, which trusts that host alone. Its error holds the text it was given
// (a network, not a secret).
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8 or fd00::/8)", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8 or fd00::/8) or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusted reports whether a is a trusted proxy.
func (p Proxies) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Of returns the request's source (see the package comment). It is invalid only when
// RemoteAddr is not an address, which net/http never produces for a real connection.
func (p Proxies) Of(r *http.Request) netip.Addr {
	peer := Peer(r.RemoteAddr)
	if !peer.IsValid() || !p.Trusted(peer) {
		return peer
	}
	return ForwardedFor(r.Header.Values("X-Forwarded-For"), peer, p.Trusted)
}

// Peer parses a RemoteAddr ("192.0.2.1:5000", "[2001:db8::1]:443") to its address,
// IPv4-mapped IPv6 as IPv4; invalid if it is not one.
func Peer(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(remoteAddr); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// ForwardedFor walks X-Forwarded-For (every header line, in order, each a comma-separated
// list) from the right, starting at peer, a trusted proxy: the first entry that is not
// trusted is the source. Every entry trusted (or none there): the left-most trusted hop,
// which is where the request started as far as anyone trustworthy knows. An entry that is
// not an address stops the walk at the hop that wrote it: a trusted proxy would not write
// it, so nothing to its left is believed.
func ForwardedFor(values []string, peer netip.Addr, trusted func(netip.Addr) bool) netip.Addr {
	src := peer
	hops := 0
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue // "a, , b" and a trailing comma: nothing written there
			}
			if hops++; hops > maxHops {
				return src
			}
			a, ok := parseEntry(entry)
			if !ok {
				return src
			}
			if !trusted(a) {
				return a
			}
			src = a
		}
	}
	return src
}

// parseEntry reads one X-Forwarded-For entry: an address, with or without a port
// ("192.0.2.1", "192.0.2.1:443", "2001:db8::1", "[2001:db8::1]:443", "[2001:db8::1]").
func parseEntry(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// Key is the bucket a per-source limit counts a at: the address itself for IPv4, its /64
// for IPv6 (one host commonly holds a whole /64, so per-address buckets would give it
// 2^64 of them). An invalid address gets one shared bucket.
func Key(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid"
	case a.Is6():
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// String is a's form for logs: the address, or "unknown".
func String(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}
