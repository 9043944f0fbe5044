package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/config"
)

// makeSuspect teaches the node's guard that addr's cards are declined.
func makeSuspect(m *Main, addr string) {
	for range m.Config.AddressDeclineLimit {
		m.Guard.Learn(&floodgate.PaymentOrder{ClientAddr: addr, Status: floodgate.StatusFailed, FailureCode: "card_declined"})
	}
}

// TestForgedForwardedForIsOnePeer: a client that is not a trusted proxy
// writes another X-Forwarded-For on every request; it is still counted as
// the one peer it connects from, and its suspect address is limited.
func TestForgedForwardedForIsOnePeer(t *testing.T) {
	m := startMainWith(t, func(m *Main) { m.GuardClock = clocktest.New(time.Now()) }, func(c *config.Config) {
		c.TrustedProxies = "10.0.0.0/8" // not this client
		c.AddressLimit = 5
	})
	makeSuspect(m, "127.0.0.1")
	c := newClient(t, m)
	c.pause(true) // the gifts wait in line: only the attempts count
	accepted := 0
	for i := range 50 {
		r := c.do("POST", "/v1/campaigns/demo/donations",
			fmt.Sprintf(`{"amount": 500, "currency": "eur", "email": "f%d@example.org", "payment_method": "pm_card_visa"}`, i),
			"Idempotency-Key", freshKey(), "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		switch r.status {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	if accepted != 5 {
		t.Fatalf("50 forged headers from one suspect peer: %d accepted, want 5", accepted)
	}
}

// TestIPv6SubnetIsOneAddress: through a trusted proxy, IPv6 clients are
// counted by their /64, one subscriber's; the next /64 is someone else.
func TestIPv6SubnetIsOneAddress(t *testing.T) {
	m := startMainWith(t, func(m *Main) { m.GuardClock = clocktest.New(time.Now()) }, func(c *config.Config) {
		c.TrustedProxies = "127.0.0.1/32"
		c.AddressLimit = 5
	})
	makeSuspect(m, "2001:db8:5:5::1")
	c := newClient(t, m)
	c.pause(true) // the gifts wait in line: only the attempts count
	try := func(from string, i int) int {
		return c.do("POST", "/v1/campaigns/demo/donations",
			fmt.Sprintf(`{"amount": 500, "currency": "eur", "email": "v%d@example.org", "payment_method": "pm_card_visa"}`, i),
			"Idempotency-Key", freshKey(), "X-Forwarded-For", from).status
	}
	accepted := 0
	for i := range 12 {
		if try(fmt.Sprintf("2001:db8:5:5:%x::%x", i, i+2), i) == http.StatusAccepted {
			accepted++
		}
	}
	if accepted != 5 {
		t.Fatalf("12 addresses of one suspect /64: %d accepted, want 5", accepted)
	}
	if s := try("2001:db8:5:6::1", 100); s != http.StatusAccepted {
		t.Fatalf("the next /64: %d", s)
	}
}

// proxyPost sends one donation over a fresh connection from the local
// address from, first writing header (nil: none), and returns the status
// (0: the connection was refused or closed) and the donation id.
func proxyPost(t *testing.T, m *Main, from string, header *proxyproto.Header) (int, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.DialContext(context.Background(), "tcp", loopback(m.Addr))
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if header != nil {
		if _, err := header.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
	body := `{"amount": 500, "currency": "eur", "email": "p@example.org", "payment_method": "pm_card_visa"}`
	req, _ := http.NewRequest("POST", m.URL()+"/v1/campaigns/demo/donations", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", freshKey())
	if err := req.Write(conn); err != nil {
		return 0, ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode}
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, ""
	}
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	r.body = []byte(b.String())
	return r.status, r.json(t)["id"].(string)
}

// TestProxyProtocol: with the PROXY protocol on, a trusted proxy's header
// (v1 or v2) names the client, whose address the gift keeps and the
// limits count; a trusted proxy may also connect without one (a health
// check). From any other peer a header is refused, never believed, and a
// plain request is that peer's own.
func TestProxyProtocol(t *testing.T) {
	m := startMain(t, func(c *config.Config) {
		c.TrustedProxies = "127.0.0.1/32"
		c.ProxyProtocol = true
	})
	dst := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8080}
	v1 := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP("198.51.100.9"), Port: 5555}, dst)
	v2 := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::9"), Port: 5555},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 8080})
	clientOf := func(id string) string {
		d, err := m.Store.Donation(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return d.ClientAddr
	}
	tests := []struct {
		name, from string
		header     *proxyproto.Header
		want       string // the client the gift keeps; "" for refused
	}{
		{"v1 from the trusted proxy", "127.0.0.1", v1, "198.51.100.9"},
		{"v2 from the trusted proxy", "127.0.0.1", v2, "2001:db8::9"},
		{"the trusted proxy without a header", "127.0.0.1", nil, "127.0.0.1"},
		{"a header from an untrusted peer", "127.0.0.2", v1, ""},
		{"an untrusted peer without a header", "127.0.0.2", nil, "127.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, id := proxyPost(t, m, tt.from, tt.header)
			if tt.want == "" {
				if status == http.StatusAccepted {
					t.Fatalf("accepted, from client %q", clientOf(id))
				}
				return
			}
			if status != http.StatusAccepted {
				t.Fatalf("status %d", status)
			}
			if got := clientOf(id); got != tt.want {
				t.Fatalf("the gift's client is %q, want %q", got, tt.want)
			}
		})
	}
}

// TestProxyProtocolConnectionsTracked: behind the PROXY protocol, the
// connection limiter still sees which connections are idle, so that idle
// keep-alives can give way when slots run short.
func TestProxyProtocolConnectionsTracked(t *testing.T) {
	m := startMain(t, func(c *config.Config) {
		c.TrustedProxies = "127.0.0.1/32"
		c.ProxyProtocol = true
	})
	conn, err := net.Dial("tcp", loopback(m.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	h := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP("198.51.100.9"), Port: 5555},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8080})
	if _, err := h.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", m.URL()+"/healthz", nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The connection stays open, between requests: idle.
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, m, "floodgate_http_connections_idle") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("an idle keep-alive behind the PROXY protocol is not seen as idle")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
