package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestClientAddr: X-Forwarded-For is believed only from trusted proxies,
// and only its last hops: what a client writes at the left is ignored.
func TestClientAddr(t *testing.T) {
	s := &Server{Config: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"direct client", "198.51.100.7:5000", "", "198.51.100.7"},
		{"direct client lying", "198.51.100.7:5000", "1.2.3.4", "198.51.100.7"},
		{"through the load balancer", "10.0.0.2:5000", "198.51.100.7", "198.51.100.7"},
		{"spoofed left part", "10.0.0.2:5000", "1.2.3.4, 198.51.100.7", "198.51.100.7"},
		{"two trusted hops", "10.0.0.2:5000", "198.51.100.7, 10.0.0.9", "198.51.100.7"},
		{"only proxies", "10.0.0.2:5000", "10.0.0.9", "10.0.0.9"},
		{"no header from a proxy", "10.0.0.2:5000", "", "10.0.0.2"},
		{"IPv6 client", "10.0.0.2:5000", "2001:db8::7", "2001:db8::7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := s.clientAddr(r); got != tt.want {
				t.Fatalf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLimitKey: behind a proxy nobody declared trusted, each forwarded
// client is counted apart (with the proxy's address), never the whole
// audience as one.
func TestLimitKey(t *testing.T) {
	s := &Server{Config: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	key := func(remote, xff string) string {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return s.limitKey(r, s.clientAddr(r))
	}
	if a, b := key("192.0.2.1:1", "198.51.100.1"), key("192.0.2.1:1", "198.51.100.2"); a == b {
		t.Fatalf("two clients behind an undeclared proxy share the key %q", a)
	}
	if got := key("198.51.100.7:1", ""); got != "198.51.100.7" {
		t.Fatalf("a direct client: %q", got)
	}
	if got := key("10.0.0.2:1", "1.2.3.4, 198.51.100.7"); got != "198.51.100.7" {
		t.Fatalf("through a trusted proxy: %q", got)
	}
}
