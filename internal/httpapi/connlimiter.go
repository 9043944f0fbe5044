package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/floodgate/floodgate/internal/ingest"
	"github.com/floodgate/floodgate/internal/metrics"
)

// ConnLimits bounds the connections a ConnLimiter serves.
type ConnLimits struct {
	// Max is the most connections open at once.
	Max int
	// PerClient is the most connections one client may hold at once; 0
	// is no cap. A client is one IPv4 address, or one IPv6 /64: the
	// block one subscriber is usually given, and can draw addresses from
	// at will.
	PerClient int
	// Uncapped are the peers not counted per client: trusted proxies,
	// through which every donor comes, and the machine itself.
	Uncapped []netip.Prefix
	// RetryAfter is the wait a refused connection's 503 asks for.
	RetryAfter time.Duration
	// Metrics, when set, counts refused connections and closed idle
	// ones.
	Metrics *metrics.Metrics
}

// freshGrace is how long a new connection may stay silent before it
// counts as idle: a browser's preconnected socket, or a client that
// sends its request a byte at a time, is closed to make room for one
// that has something to say only after this.
const freshGrace = time.Second

// ConnLimiter is a net.Listener that serves at most Max connections at
// once and at most PerClient from one client.
//
// When connections run short, idle ones make room first: a connection
// that arrives while Max-Max/10 or more are open closes the one that has
// been idle longest (a keep-alive connection between requests, or a new
// one silent for more than freshGrace), so that idle sockets, whoever
// holds them, never lock a new donor out. A client at its own cap closes
// its own longest-idle connection the same way. Only a connection that
// finds no idle one to take the place of is refused: answered at once
// with 503 overloaded, problem+json and Retry-After, and closed, rather
// than left waiting unseen in the kernel's backlog. At most Max/16+1 such
// answers are written at a time; beyond that a connection is simply
// closed.
//
// Idleness is learned from the http.Server: set its ConnState to the
// limiter's ConnState. Without it no connection is ever closed to make
// room. Shortening the idle timeout under pressure was considered and
// left out: closing idle connections when, and only when, their slot is
// wanted frees it at the moment it is needed, without closing ones
// nobody needs yet.
type ConnLimiter struct {
	net.Listener
	limits ConnLimits
	// crowded is the number of open connections from which a newcomer
	// closes an idle one.
	crowded   int
	rejecting chan struct{}
	// busyReply and clientReply are the 503s for a full server and for a
	// client at its cap.
	busyReply, clientReply []byte

	mu      sync.Mutex
	open    int
	clients map[netip.Addr]*connClient
	// idle holds the keep-alive connections between requests, longest
	// idle first; fresh the connections that have not sent a request
	// yet, oldest first.
	idle, fresh list.List
}

// connClient is what the limiter keeps of one capped client.
type connClient struct {
	open int
	// idle holds the client's idle connections, longest idle first.
	idle list.List
}

// limitedConn is one connection served by a ConnLimiter.
type limitedConn struct {
	net.Conn
	l      *ConnLimiter
	client *connClient // nil when the peer is not capped
	key    netip.Addr

	// Guarded by l.mu.
	released bool
	since    time.Time     // when it joined fresh
	where    *list.Element // in l.idle or l.fresh
	mine     *list.Element // in client.idle
}

// NewConnLimiter returns a ConnLimiter accepting from l.
func NewConnLimiter(l net.Listener, limits ConnLimits) *ConnLimiter {
	limits.Max = max(limits.Max, 1)
	return &ConnLimiter{
		Listener:    l,
		limits:      limits,
		crowded:     limits.Max - limits.Max/10,
		rejecting:   make(chan struct{}, limits.Max/16+1),
		busyReply:   overloadReply(limits.RetryAfter, "Too many connections are open; try again shortly."),
		clientReply: overloadReply(limits.RetryAfter, "Too many connections are open from your address; try again shortly."),
		clients:     make(map[netip.Addr]*connClient),
	}
}

// Accept returns the next connection the limiter serves. Connections it
// refuses are answered and closed here and never returned.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, capped := l.clientOf(c.RemoteAddr())
		lc, victims, refused := l.admit(c, key, capped, time.Now())
		// The victims' slots are already free; closing them (outside the
		// lock, since Close takes it) ends their server goroutines.
		for _, v := range victims {
			_ = v.Conn.Close()
		}
		if l.limits.Metrics != nil && len(victims) > 0 {
			l.limits.Metrics.ConnsClosedIdle.Add(float64(len(victims)))
		}
		if lc != nil {
			return lc, nil
		}
		reply := l.busyReply
		if refused == refusedPerClient {
			reply = l.clientReply
		}
		if l.limits.Metrics != nil {
			l.limits.Metrics.ConnsRefused.WithLabelValues(refused).Inc()
		}
		select {
		case l.rejecting <- struct{}{}:
			go func() {
				defer func() { <-l.rejecting }()
				reject(c, reply)
			}()
		default:
			_ = c.Close()
		}
	}
}

// Why a connection was refused, as floodgate_http_connections_refused_total
// counts it.
const (
	refusedMaxConns  = "max_conns"
	refusedPerClient = "per_client"
)

// admit decides on a new connection: it returns the connection to serve,
// or why it is refused, and the idle connections whose slots were given
// up to make room for it.
func (l *ConnLimiter) admit(c net.Conn, key netip.Addr, capped bool, now time.Time) (_ *limitedConn, victims []*limitedConn, refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var client *connClient
	if capped {
		client = l.clients[key]
		if client != nil && client.open >= l.limits.PerClient {
			front := client.idle.Front()
			if front == nil {
				return nil, nil, refusedPerClient
			}
			v := front.Value.(*limitedConn)
			l.releaseLocked(v)
			victims = append(victims, v)
		}
	}
	if l.open >= l.crowded {
		if v := l.idlestLocked(now); v != nil {
			l.releaseLocked(v)
			victims = append(victims, v)
		}
	}
	if l.open >= l.limits.Max {
		return nil, victims, refusedMaxConns
	}
	l.open++
	if capped {
		if client == nil {
			client = &connClient{}
			l.clients[key] = client
		}
		client.open++
	}
	return &limitedConn{Conn: c, l: l, client: client, key: key}, victims, ""
}

// idlestLocked returns the connection to close first for a newcomer: the
// one idle longest between requests, else the oldest that has been
// silent since it opened for more than freshGrace, else nil.
func (l *ConnLimiter) idlestLocked(now time.Time) *limitedConn {
	if e := l.idle.Front(); e != nil {
		return e.Value.(*limitedConn)
	}
	if e := l.fresh.Front(); e != nil {
		if c := e.Value.(*limitedConn); now.Sub(c.since) >= freshGrace {
			return c
		}
	}
	return nil
}

// ConnState is the http.Server's ConnState hook through which the limiter
// learns which connections are idle.
func (l *ConnLimiter) ConnState(c net.Conn, state http.ConnState) {
	// A listener above this one (the PROXY protocol's) hands the server
	// its own wrapper; Raw is how it gives back the connection beneath.
	for {
		r, ok := c.(interface{ Raw() net.Conn })
		if !ok {
			break
		}
		c = r.Raw()
	}
	lc, ok := c.(*limitedConn)
	if !ok || lc.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.released {
		return
	}
	l.unlistLocked(lc)
	switch state {
	case http.StateNew:
		lc.since = time.Now()
		lc.where = l.fresh.PushBack(lc)
	case http.StateIdle:
		lc.where = l.idle.PushBack(lc)
		if lc.client != nil {
			lc.mine = lc.client.idle.PushBack(lc)
		}
	}
}

// Open returns the connections open now and how many of them are idle:
// between requests, or silent since they opened.
func (l *ConnLimiter) Open() (open, idle int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.idle.Len() + l.fresh.Len()
}

// releaseLocked gives c's slot back, once.
func (l *ConnLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	l.unlistLocked(c)
	l.open--
	if c.client != nil {
		c.client.open--
		if c.client.open == 0 {
			delete(l.clients, c.key)
		}
	}
}

// unlistLocked takes c off the lists of idle and fresh connections.
func (l *ConnLimiter) unlistLocked(c *limitedConn) {
	if c.where != nil {
		// An element knows its list; Remove on the other list is a no-op.
		l.idle.Remove(c.where)
		l.fresh.Remove(c.where)
		c.where = nil
	}
	if c.mine != nil {
		c.client.idle.Remove(c.mine)
		c.mine = nil
	}
}

// clientOf returns the client a peer counts as, and whether it is capped.
func (l *ConnLimiter) clientOf(a net.Addr) (netip.Addr, bool) {
	if l.limits.PerClient <= 0 {
		return netip.Addr{}, false
	}
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.Addr{}, false
	}
	return clientKey(ip.Unmap(), l.limits.Uncapped)
}

// clientKey is the client ip counts as: the subscriber's block the
// card-testing limits count it under too (ingest.SubscriberPrefix). ok is
// false when ip is uncapped.
func clientKey(ip netip.Addr, uncapped []netip.Prefix) (key netip.Addr, ok bool) {
	for _, p := range uncapped {
		if p.Contains(ip) {
			return netip.Addr{}, false
		}
	}
	return ingest.SubscriberPrefix(ip).Addr(), true
}

// Close closes the connection and gives its slot back.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return err
}
