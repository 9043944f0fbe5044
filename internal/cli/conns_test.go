package cli

// The public port against a hostile client, on a whole node as `floodgate
// serve` wires it: webhooks refused before their bodies are read, and idle
// connections that make room for new donors.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

// rawDial opens a connection to m from the loopback address from.
func rawDial(t *testing.T, m *Main, from string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 30 * time.Second}
	c, err := d.Dial("tcp", loopback(m.Addr))
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // only so that a broken test cannot hang
	return c, bufio.NewReader(c)
}

// TestWebhookUnsignedRefusedBeforeItsBody: deliveries without a signature
// Stripe could have written are answered 400 naming Stripe-Signature as
// soon as their headers are in: none of them has sent a byte of the
// body it declares when its answer arrives.
func TestWebhookUnsignedRefusedBeforeItsBody(t *testing.T) {
	m, c := whStart(t, nil)
	before := whMetric(t, c, whFailures("signature")) + whMetric(t, c, whFailures("timestamp"))
	headers := []string{"", "garbage", "v1=" + strings.Repeat("0", 64),
		fmt.Sprintf("t=%d,v1=%s", time.Now().Add(-time.Hour).Unix(), strings.Repeat("0", 64))}
	for i := range 20 {
		conn, r := rawDial(t, m, "127.0.0.1")
		head := "POST /v1/webhooks/stripe HTTP/1.1\r\nHost: floodgate\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n"
		if h := headers[i%len(headers)]; h != "" {
			head += "Stripe-Signature: " + h + "\r\n"
		}
		if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("delivery %d: no answer before its body: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		whRefusedSignature(t, reply{status: resp.StatusCode, header: resp.Header, body: b})
	}
	if got := whMetric(t, c, whFailures("signature")) + whMetric(t, c, whFailures("timestamp")); got != before+20 {
		t.Fatalf("webhook failures (signature, timestamp) = %v, want %v", got, before+20)
	}
}

// TestIdleConnectionsGiveWayToNewDonors: with FLOODGATE_MAX_CONNS = 60,
// sixty keep-alive connections opened by one client and left idle do not
// lock a new donor out: the node closes the ones idle longest to make
// room, and the donor's page and donation are answered.
func TestIdleConnectionsGiveWayToNewDonors(t *testing.T) {
	m := startMain(t, func(cfg *config.Config) {
		cfg.MaxConns, cfg.MaxConnsPerClient, cfg.SSEMaxSubscribers = 60, 59, 10
	})
	type held struct {
		c net.Conn
		r *bufio.Reader
	}
	var hog []held
	for i := range 60 {
		conn, r := rawDial(t, m, "127.0.0.2")
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: floodgate\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("hog connection %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("hog connection %d: %d", i, resp.StatusCode)
		}
		hog = append(hog, held{conn, r})
	}

	donor := newClient(t, m)
	if r := donor.do("GET", "/healthz", ""); r.status != http.StatusOK {
		t.Fatalf("a new donor: %d %s", r.status, r.body)
	}
	r := donor.do("POST", "/v1/campaigns/demo/donations", gift(2500, "pm_card_visa"), "Idempotency-Key", freshKey())
	if r.status != http.StatusAccepted {
		t.Fatalf("a new donor's gift: %d %s", r.status, r.body)
	}
	var accepted struct{ ID string }
	if err := json.Unmarshal(r.body, &accepted); err != nil || accepted.ID == "" {
		t.Fatalf("202 body %s", r.body)
	}
	closed := 0
	for _, h := range hog {
		_ = h.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := h.r.ReadByte(); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				closed++
			}
		}
	}
	metrics := donor.do("GET", "/metrics", "")
	t.Logf("%d of the hog's 60 idle connections were closed", closed)
	if closed == 0 {
		t.Fatal("no idle connection was closed, yet every newcomer got in past 60")
	}
	if !strings.Contains(string(metrics.body), "floodgate_http_idle_connections_closed_total") ||
		!strings.Contains(string(metrics.body), "floodgate_http_connections_open") {
		t.Fatal("/metrics lacks the connection series")
	}
}
