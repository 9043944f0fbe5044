package httpapi

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// LimitListener serves at most max connections at once. A connection past
// the limit is not left waiting, unseen, in the kernel's backlog: it is
// answered at once with 503 overloaded, problem+json and Retry-After, and
// closed. At most max/16+1 such answers are written at a time; beyond that
// a connection is simply closed.
func LimitListener(l net.Listener, max int, retryAfter time.Duration) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max),
		rejecting: make(chan struct{}, max/16+1), reply: overloadReply(retryAfter)}
}

type limitListener struct {
	net.Listener
	slots     chan struct{}
	rejecting chan struct{}
	reply     []byte
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
		}
		select {
		case l.rejecting <- struct{}{}:
			go l.reject(c)
		default:
			_ = c.Close()
		}
	}
}

// reject writes the 503, then reads what the client sent for a moment
// before closing, so that closing with unread data does not reset the
// connection before the client has read the answer.
func (l *limitListener) reject(c net.Conn) {
	defer func() { <-l.rejecting }()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(l.reply); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

func overloadReply(wait time.Duration) []byte {
	body := `{"type":"overloaded","title":"The server is overloaded.","status":503,"detail":"Too many connections are open; try again shortly."}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/problem+json\r\n" +
		"Cache-Control: no-store\r\n" +
		"Retry-After: " + retryAfter(wait) + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
