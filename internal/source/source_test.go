package source

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func mustProxies(t testing.TB, cidrs ...string) Proxies {
	t.Helper()
	var nets []netip.Prefix
	for _, c := range cidrs {
		p, err := ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, p)
	}
	return NewProxies(nets)
}

func TestParseCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		" 10.1.2.3/8 ":        "10.0.0.0/8", // host bits masked
		"192.0.2.7":           "192.0.2.7/32",
		"fd00::/8":            "fd00::/8",
		"2001:db8::1":         "2001:db8::1/128",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:192.0.2.1":    "192.0.2.1/32",
	} {
		got, err := ParseCIDR(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0/8", "localhost", "10.0.0.0/", "fe80::1%eth0", "*", "10.0.0.0/8,10.1.0.0/16"} {
		if p, err := ParseCIDR(bad); err == nil {
			t.Errorf("ParseCIDR(%q) = %v, want an error", bad, p)
		}
	}
}

// TestOf: the peer is the source unless it is a trusted proxy; behind trusted proxies,
// the right-most X-Forwarded-For entry that is not one.
func TestOf(t *testing.T) {
	p := mustProxies(t, "10.0.0.0/8", "fd00::/8")
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct client", "192.0.2.1:5000", nil, "192.0.2.1"},
		{"direct client spoofing XFF", "192.0.2.1:5000", []string{"198.51.100.9"}, "192.0.2.1"},
		{"direct client spoofing a trusted XFF", "192.0.2.1:5000", []string{"10.0.0.1"}, "192.0.2.1"},
		{"one proxy", "10.0.0.1:5000", []string{"198.51.100.9"}, "198.51.100.9"},
		{"one proxy, client-written entries to the left", "10.0.0.1:5000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.9"}, "198.51.100.9"},
		{"two proxies", "10.0.0.1:5000", []string{"198.51.100.9, 10.0.0.2"}, "198.51.100.9"},
		{"two proxies, two header lines", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.9", "10.0.0.2"}, "198.51.100.9"},
		{"proxy without XFF", "10.0.0.1:5000", nil, "10.0.0.1"},
		{"only proxies", "10.0.0.1:5000", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"garbage after a proxy", "10.0.0.1:5000", []string{"198.51.100.9, garbage, 10.0.0.2"}, "10.0.0.2"},
		{"garbage right of the peer", "10.0.0.1:5000", []string{"198.51.100.9, unknown"}, "10.0.0.1"},
		{"ports and brackets", "[fd00::1]:443", []string{"[2001:db8::5]:1234, 10.0.0.7:80"}, "2001:db8::5"},
		{"mapped", "[::ffff:10.0.0.1]:443", []string{"::ffff:198.51.100.9"}, "198.51.100.9"},
		{"empty entries", "10.0.0.1:5000", []string{"198.51.100.9, ,", ""}, "198.51.100.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := p.Of(r).String(); got != tc.want {
				t.Errorf("Of = %s, want %s", got, tc.want)
			}
		})
	}
	// No trusted proxies: XFF is never read.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	if got := (Proxies{}).Of(r).String(); got != "10.0.0.1" {
		t.Errorf("zero Proxies: %s, want the peer", got)
	}
}

// TestForwardedForBounded: a header of thousands of trusted entries is read only to
// maxHops, and answers a trusted hop, never an address from beyond the bound.
func TestForwardedForBounded(t *testing.T) {
	p := mustProxies(t, "10.0.0.0/8")
	long := "198.51.100.9, " + strings.Repeat("10.0.0.2, ", 5000) + "10.0.0.3"
	got := ForwardedFor([]string{long}, netip.MustParseAddr("10.0.0.1"), p.Trusted)
	if !p.Trusted(got) {
		t.Errorf("past the bound: %s, want a trusted hop", got)
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::1":   "2001:db8:1:2::/64",
	} {
		if got := Key(netip.MustParseAddr(in)); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
	if Key(netip.Addr{}) != "invalid" || Peer("garbage").IsValid() {
		t.Error("an invalid address must have the shared key")
	}
	if got := Peer("[::ffff:192.0.2.1]:5000"); got.String() != "192.0.2.1" {
		t.Errorf("Peer of a mapped address: %s", got)
	}
}

// FuzzForwardedFor: whatever the header, no panic; the answer is a valid, normalized
// address, the peer or one written in the header; and a peer that is not a trusted proxy
// is always the answer, whatever it sends.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"198.51.100.9", "1.1.1.1, 10.0.0.2", "[2001:db8::5]:1234, 10.0.0.7:80", "garbage, 10.0.0.2",
		",,,", "::ffff:10.0.0.1", "[fd00::1", "10.0.0.1:99999", "fe80::1%eth0", strings.Repeat("10.0.0.1,", 40)} {
		f.Add(s, true)
		f.Add(s, false)
	}
	p := mustProxies(f, "10.0.0.0/8", "fd00::/8")
	f.Fuzz(func(t *testing.T, xff string, viaProxy bool) {
		remote := "192.0.2.1:5000"
		if viaProxy {
			remote = "10.0.0.1:5000"
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := p.Of(r)
		if !got.IsValid() {
			t.Fatalf("%q: invalid source", xff)
		}
		if !viaProxy {
			if got.String() != "192.0.2.1" {
				t.Fatalf("%q from an untrusted peer moved the source to %s", xff, got)
			}
			return
		}
		if got.String() != "10.0.0.1" && !strings.Contains(xff, strings.TrimPrefix(got.String(), "::ffff:")) {
			// The header may spell it otherwise (leading zeros in v6, mapped v4):
			// compare by parsing every piece.
			found := false
			for _, e := range strings.Split(xff, ",") {
				if a, ok := parseEntry(strings.TrimSpace(e)); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("%q: source %s is neither the peer nor written in the header", xff, got)
			}
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("%q: source %s not normalized", xff, got)
		}
	})
}
