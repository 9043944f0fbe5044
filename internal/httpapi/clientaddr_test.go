package httpapi

import (
	"fmt"
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

// TestForgedForwardedFor: an untrusted peer that writes another
// X-Forwarded-For on every request is still the one peer it connects
// from, so a forged header never dodges the address limit.
func TestForgedForwardedFor(t *testing.T) {
	s := &Server{Config: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	seen := map[string]bool{}
	for i := range 50 {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = "192.0.2.1:4000"
		r.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d, 10.0.0.%d", i, i))
		seen[s.clientAddr(r)] = true
	}
	if len(seen) != 1 || !seen["192.0.2.1"] {
		t.Fatalf("50 forged headers from one peer gave the clients %v", seen)
	}
}
