package httpapi

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/metrics"
)

// TestLimitListenerAnswers503: past its limit (no cap per client), a connection gets a 503
// with Retry-After at once instead of hanging; once a slot frees, requests
// are served again.
func TestLimitListenerAnswers503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(NewConnLimiter(ln, ConnLimits{Max: 2, RetryAfter: 3 * time.Second})) }()
	defer srv.Close()
	addr := ln.Addr().String()

	// Two connections hold both slots (each sends half a request).
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\n")
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond) // let the server accept them

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "POST /v1/campaigns/demo/donations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer past the limit: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(body), `"type":"overloaded"`) {
		t.Fatalf("past the limit: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	for _, h := range held {
		h.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get("http://" + addr + "/")
		if err == nil && r.StatusCode == 200 {
			r.Body.Close()
			return
		}
		if err == nil {
			r.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots never freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// limitedNode is an http.Server behind a ConnLimiter on loopback, wired
// as floodgate serve wires it. GET / answers "ok" at once; GET /hold
// answers only once release is closed, so that a test can keep
// connections active.
type limitedNode struct {
	addr    string
	limiter *ConnLimiter
	metrics *metrics.Metrics
	held    chan struct{} // receives once per /hold request begun
	release chan struct{}
}

func startLimited(t *testing.T, limits ConnLimits) *limitedNode {
	t.Helper()
	n := &limitedNode{metrics: metrics.New(), held: make(chan struct{}, 100), release: make(chan struct{})}
	limits.Metrics, limits.RetryAfter = n.metrics, 2*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.limiter = NewConnLimiter(ln, limits)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /hold", func(w http.ResponseWriter, r *http.Request) {
		n.held <- struct{}{}
		select {
		case <-n.release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "held")
	})
	// The timeouts are floodgate's defaults; none runs out during a test.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
		ConnState: n.limiter.ConnState}
	go func() { _ = srv.Serve(n.limiter) }()
	t.Cleanup(func() {
		select {
		case <-n.release:
		default:
			close(n.release)
		}
		_ = srv.Close()
	})
	n.addr = ln.Addr().String()
	return n
}

// clientConn is one keep-alive connection from a given loopback address
// (127.0.0.1, 127.0.0.2, ...: Linux routes all of 127/8 to loopback, so
// each is a client of its own).
type clientConn struct {
	net.Conn
	r *bufio.Reader
}

func dialFrom(t *testing.T, from, addr string) *clientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 30 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // only so that a broken test cannot hang
	return &clientConn{Conn: c, r: bufio.NewReader(c)}
}

// send writes a GET for path.
func (c *clientConn) send(t *testing.T, path string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: floodgate\r\n\r\n"); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// answer reads one response: its status, Retry-After and body.
func (c *clientConn) answer(t *testing.T) (int, string, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// get sends a GET for path and reads its answer.
func (c *clientConn) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c.send(t, path)
	code, _, body := c.answer(t)
	return code, body
}

// closedByServer reports whether the server closed c: a read ends at
// once with EOF or a reset. An open idle connection reads nothing and
// times out after wait.
func (c *clientConn) closedByServer(wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Now().Add(60 * time.Second))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// settle waits until every open connection of n is idle, as the server
// has recorded it after its last answer.
func (n *limitedNode) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		open, idle := n.limiter.Open()
		if open == idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, %d idle: never all idle", open, idle)
		}
		time.Sleep(time.Millisecond)
	}
}

// holding sends count /hold requests from from and waits until the
// server is handling every one of them.
func (n *limitedNode) holding(t *testing.T, from string, count int) []*clientConn {
	t.Helper()
	var conns []*clientConn
	for range count {
		c := dialFrom(t, from, n.addr)
		c.send(t, "/hold")
		select {
		case <-n.held:
		case <-time.After(60 * time.Second):
			t.Fatal("a /hold request never reached its handler")
		}
		conns = append(conns, c)
	}
	return conns
}

// isOverloaded checks a connection refused with 503 overloaded and
// Retry-After.
func isOverloaded(t *testing.T, c *clientConn, detail string) {
	t.Helper()
	code, wait, body := c.answer(t)
	if code != http.StatusServiceUnavailable || wait != "2" || !strings.Contains(body, `"type":"overloaded"`) || !strings.Contains(body, detail) {
		t.Fatalf("answer %d (Retry-After %q) %s, want 503 overloaded with Retry-After and %q", code, wait, body, detail)
	}
}

// TestIdleKeepAlivesMakeRoom: with 60 connections at most, one client
// holding 60 keep-alive connections between requests does not lock a new
// donor out: from nine tenths full, each newcomer closes the connection
// idle longest, and the new donor's request is answered.
func TestIdleKeepAlivesMakeRoom(t *testing.T) {
	n := startLimited(t, ConnLimits{Max: 60, PerClient: 64})
	var hog []*clientConn
	for i := range 60 {
		c := dialFrom(t, "127.0.0.1", n.addr)
		if code, body := c.get(t, "/"); code != http.StatusOK {
			t.Fatalf("hog connection %d: %d %s", i, code, body)
		}
		hog = append(hog, c)
		n.settle(t)
	}
	open, idle := n.limiter.Open()
	t.Logf("after 60 keep-alive connections from one client: %d open, %d idle", open, idle)
	if open != 54 || idle != 54 {
		t.Fatalf("%d open, %d idle; want 54 of each: from 54 open (nine tenths), a newcomer closes the longest idle", open, idle)
	}

	donor := dialFrom(t, "127.0.0.2", n.addr)
	if code, body := donor.get(t, "/"); code != http.StatusOK || body != "ok" {
		t.Fatalf("the new donor: %d %s, want 200", code, body)
	}
	// The seven connections idle longest made room (six for the hog's
	// own last ones, one for the donor); the rest are still served.
	for i, c := range hog {
		var closed bool
		if i < 7 {
			closed = c.closedByServer(10 * time.Second)
		} else {
			closed = c.closedByServer(50 * time.Millisecond)
		}
		if closed != (i < 7) {
			t.Fatalf("hog connection %d: closed %v, want %v", i, closed, i < 7)
		}
	}
	if code, _ := hog[59].get(t, "/"); code != http.StatusOK {
		t.Fatalf("a hog connection not closed could not be reused: %d", code)
	}
	if got := counterValue(n.metrics.ConnsClosedIdle); got != 7 {
		t.Fatalf("idle connections closed = %v, want 7", got)
	}
	if got := counterValue(n.metrics.ConnsRefused.WithLabelValues("max_conns")); got != 0 {
		t.Fatalf("refused = %v, want none", got)
	}
}

// TestSilentNewConnectionsMakeRoom: connections that opened and sent
// nothing for longer than freshGrace give way to a newcomer too.
func TestSilentNewConnectionsMakeRoom(t *testing.T) {
	n := startLimited(t, ConnLimits{Max: 10})
	var silent []*clientConn
	for range 10 {
		silent = append(silent, dialFrom(t, "127.0.0.1", n.addr))
	}
	deadline := time.Now().Add(30 * time.Second)
	for open, idle := n.limiter.Open(); open != 10 || idle != 10; open, idle = n.limiter.Open() {
		if time.Now().After(deadline) {
			t.Fatalf("%d open, %d waiting for a request; want 10", open, idle)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(freshGrace + 100*time.Millisecond)
	donor := dialFrom(t, "127.0.0.2", n.addr)
	if code, body := donor.get(t, "/"); code != http.StatusOK {
		t.Fatalf("the donor: %d %s, want 200", code, body)
	}
	if !silent[0].closedByServer(10 * time.Second) {
		t.Fatal("the oldest silent connection was not closed")
	}
}

// TestBusyConnectionsStillRefuse: when every connection is in the middle
// of a request, there is nothing idle to close, and a newcomer is
// answered 503 overloaded with Retry-After; once requests end, newcomers
// are served again.
func TestBusyConnectionsStillRefuse(t *testing.T) {
	n := startLimited(t, ConnLimits{Max: 2})
	held := n.holding(t, "127.0.0.1", 2)
	c := dialFrom(t, "127.0.0.2", n.addr)
	c.send(t, "/")
	isOverloaded(t, c, "Too many connections are open;")
	if got := counterValue(n.metrics.ConnsRefused.WithLabelValues("max_conns")); got != 1 {
		t.Fatalf(`refused{reason="max_conns"} = %v, want 1`, got)
	}
	close(n.release)
	for _, h := range held {
		if code, body, _ := h.answer(t); code != http.StatusOK {
			t.Fatalf("held request: %d %s", code, body)
		}
	}
	n.settle(t)
	if code, body := dialFrom(t, "127.0.0.2", n.addr).get(t, "/"); code != http.StatusOK {
		t.Fatalf("after the requests ended: %d %s", code, body)
	}
}

// TestPerClientCap: a client with as many connections busy as its cap is
// refused one more with 503, while another client still gets in; once
// its connections are idle, a new one of its own closes its longest idle
// one instead of being refused.
func TestPerClientCap(t *testing.T) {
	n := startLimited(t, ConnLimits{Max: 100, PerClient: 3})
	held := n.holding(t, "127.0.0.1", 3)
	extra := dialFrom(t, "127.0.0.1", n.addr)
	extra.send(t, "/")
	isOverloaded(t, extra, "from your address")
	if got := counterValue(n.metrics.ConnsRefused.WithLabelValues("per_client")); got != 1 {
		t.Fatalf(`refused{reason="per_client"} = %v, want 1`, got)
	}
	if code, body := dialFrom(t, "127.0.0.2", n.addr).get(t, "/"); code != http.StatusOK {
		t.Fatalf("another client: %d %s, want 200", code, body)
	}

	close(n.release)
	for _, h := range held {
		if code, _, body := h.answer(t); code != http.StatusOK {
			t.Fatalf("held request: %d %s", code, body)
		}
	}
	// One more request each, in turn, so that held[0] is the one idle
	// longest.
	for _, h := range held {
		n.settle(t)
		if code, body := h.get(t, "/"); code != http.StatusOK {
			t.Fatalf("a request on a connection that was held: %d %s", code, body)
		}
	}
	n.settle(t)
	if code, body := dialFrom(t, "127.0.0.1", n.addr).get(t, "/"); code != http.StatusOK {
		t.Fatalf("the capped client with only idle connections: %d %s, want 200", code, body)
	}
	if !held[0].closedByServer(10 * time.Second) {
		t.Fatal("the client's longest idle connection was not closed to make room")
	}
	if code, body := held[2].get(t, "/"); code != http.StatusOK {
		t.Fatalf("the client's other connections: %d %s", code, body)
	}
}

// TestTrustedProxyNotCapped: a trusted proxy carries every donor, so it
// is not capped per client, while a client beside it is.
func TestTrustedProxyNotCapped(t *testing.T) {
	n := startLimited(t, ConnLimits{Max: 100, PerClient: 2, Uncapped: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	n.holding(t, "127.0.0.1", 6)
	n.holding(t, "127.0.0.2", 2)
	c := dialFrom(t, "127.0.0.2", n.addr)
	c.send(t, "/")
	isOverloaded(t, c, "from your address")
	if code, body := dialFrom(t, "127.0.0.1", n.addr).get(t, "/"); code != http.StatusOK {
		t.Fatalf("the trusted proxy's seventh connection: %d %s, want 200", code, body)
	}
}

// TestClientKey: an IPv4 client is its address; an IPv6 client is its
// /64, since one subscriber is given a whole /64 and can use any address
// in it; an IPv4-mapped IPv6 peer is its IPv4 address; uncapped prefixes
// are nobody's.
func TestClientKey(t *testing.T) {
	l := NewConnLimiter(nil, ConnLimits{Max: 10, PerClient: 2, Uncapped: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}})
	key := func(ip string) string {
		k, ok := l.clientOf(&net.TCPAddr{IP: net.ParseIP(ip), Port: 4000})
		if !ok {
			return "uncapped"
		}
		return k.String()
	}
	for _, tt := range []struct{ ip, want string }{
		{"198.51.100.7", "198.51.100.7"},
		{"::ffff:198.51.100.7", "198.51.100.7"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"},
		{"2001:db8:1:2::1", "2001:db8:1:2::"},
		{"2001:db8:1:3::1", "2001:db8:1:3::"},
		{"10.1.2.3", "uncapped"},
		{"::ffff:10.1.2.3", "uncapped"},
		{"2001:db8:ffff:1::1", "uncapped"},
	} {
		if got := key(tt.ip); got != tt.want {
			t.Errorf("client of %s = %s, want %s", tt.ip, got, tt.want)
		}
	}
	if _, ok := NewConnLimiter(nil, ConnLimits{Max: 10}).clientOf(&net.TCPAddr{IP: net.ParseIP("198.51.100.7")}); ok {
		t.Error("with no cap per client, a client was counted")
	}
}

// BenchmarkConnLimiter measures what tracking idleness costs a request on
// a keep-alive connection: two ConnState calls, each a lock and a list
// operation. "plain" is the limiter without the hook, as LimitListener
// ran before.
func BenchmarkConnLimiter(b *testing.B) {
	for _, tracked := range []bool{false, true} {
		name := "plain"
		if tracked {
			name = "tracked"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			limiter := NewConnLimiter(ln, ConnLimits{Max: 20000, PerClient: 256})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
			if tracked {
				srv.ConnState = limiter.ConnState
			}
			go func() { _ = srv.Serve(limiter) }()
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 256}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			url := "http://" + ln.Addr().String() + "/"
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := hc.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
