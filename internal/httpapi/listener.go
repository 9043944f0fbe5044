package httpapi

import (
	"io"
	"net"
	"strconv"
	"time"
)

// reject writes reply, then reads what the client sent for a moment
// before closing, so that closing with unread data does not reset the
// connection before the client has read the answer.
func reject(c net.Conn, reply []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(reply); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// overloadReply is a whole HTTP response refusing a connection: 503
// overloaded, problem+json, with Retry-After and detail.
func overloadReply(wait time.Duration, detail string) []byte {
	body := `{"type":"overloaded","title":"The server is overloaded.","status":503,"detail":` + strconv.Quote(detail) + "}\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/problem+json\r\n" +
		"Cache-Control: no-store\r\n" +
		"Retry-After: " + retryAfter(wait) + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}
