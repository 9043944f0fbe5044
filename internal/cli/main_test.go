package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// node started by a test must stop everything it started on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testAdminToken = "test-admin-token-of-at-least-32-characters"

// startMain starts a node exactly as `floodgate serve --demo` does, on a
// loopback port with a temporary data directory and the in-process
// sandbox. change may adjust the configuration first.
func startMain(tb testing.TB, change func(*config.Config)) *Main {
	tb.Helper()
	return startMainAt(tb, nil, change)
}

// startMainAt is startMain on clock (nil: the system clock).
func startMainAt(tb testing.TB, clock floodgate.Clock, change func(*config.Config)) *Main {
	tb.Helper()
	return startMainWith(tb, func(m *Main) { m.Clock = clock }, change)
}

// startMainWith is startMain with setup applied to the Main before it
// opens (its clocks).
func startMainWith(tb testing.TB, setup func(*Main), change func(*config.Config)) *Main {
	tb.Helper()
	cfg := loopbackDefaults(tb)
	cfg.Demo = true
	cfg.AdminToken = testAdminToken
	// Most tests reuse one email from 127.0.0.1, and many decline cards
	// on purpose: the card-testing limits are off unless a test is about
	// them.
	cfg.AddressLimit, cfg.EmailLimit = 0, 0
	if change != nil {
		change(cfg)
	}
	return openMainWith(tb, cfg, setup)
}

// loopbackDefaults is every default but where the node listens (free
// loopback ports, public and metrics) and keeps its state (a temporary
// directory), so that tests run side by side.
func loopbackDefaults(tb testing.TB) *config.Config {
	cfg := config.Defaults()
	cfg.Addr, cfg.MetricsAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", tb.TempDir()
	return cfg
}

func openMain(tb testing.TB, cfg *config.Config) *Main {
	tb.Helper()
	return openMainAt(tb, cfg, nil)
}

// openMainAt opens a node whose clock is clock (nil: the system clock).
func openMainAt(tb testing.TB, cfg *config.Config, clock floodgate.Clock) *Main {
	tb.Helper()
	return openMainWith(tb, cfg, func(m *Main) { m.Clock = clock })
}

// openMainWith opens a node after setup has adjusted it (nil: none).
func openMainWith(tb testing.TB, cfg *config.Config, setup func(*Main)) *Main {
	tb.Helper()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	logOut := io.Discard
	if os.Getenv("FLOODGATE_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	m := &Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if setup != nil {
		setup(m)
	}
	if err := m.Open(context.Background()); err != nil {
		_ = m.Close()
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// client speaks to a node over real HTTP.
type client struct {
	tb   testing.TB
	base string
	// metrics is the node's /metrics URL: a request for /metrics goes
	// there, as the node serves it apart from the public port.
	metrics string
	hc      *http.Client
}

func newClient(tb testing.TB, m *Main) *client {
	return &client{tb: tb, base: m.URL(), metrics: m.MetricsURL(), hc: &http.Client{Timeout: 30 * time.Second}}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(tb testing.TB) map[string]any {
	tb.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		tb.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return v
}

// do sends a request; headers are name, value pairs.
func (c *client) do(method, path, body string, headers ...string) reply {
	c.tb.Helper()
	url := c.base + path
	if path == "/metrics" && c.metrics != "" {
		url = c.metrics
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

var keyCounter atomic.Int64

func freshKey() string {
	return fmt.Sprintf("test-key-%d-%d", time.Now().UnixNano(), keyCounter.Add(1))
}

// gift is a donation body.
func gift(amount int, pm string) string {
	return fmt.Sprintf(`{"amount": %d, "currency": "eur", "email": "aoife@example.ie", "name": "Aoife",
		"payment_method": %q, "message": "Go on!"}`, amount, pm)
}

// donate posts a gift to campaign demo and expects 202.
func (c *client) donate(body string) (id, token string) {
	c.tb.Helper()
	r := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", freshKey())
	if r.status != http.StatusAccepted {
		c.tb.Fatalf("donate: %d %s", r.status, r.body)
	}
	v := r.json(c.tb)
	return v["id"].(string), v["donor_token"].(string)
}

// waitStatus polls a donation until its status is want, or fails after
// the deadline. The deadline is generous: tests never fail on a slow
// machine, only on a wrong outcome.
func (c *client) waitStatus(id, want string, timeout time.Duration) map[string]any {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]any
	for time.Now().Before(deadline) {
		r := c.do("GET", "/v1/donations/"+id, "")
		if r.status != http.StatusOK {
			c.tb.Fatalf("GET donation: %d %s", r.status, r.body)
		}
		last = r.json(c.tb)
		if last["status"] == want {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.tb.Fatalf("donation %s: status %v after %v, want %s", id, last["status"], timeout, want)
	return nil
}

func (c *client) totals(campaign string) map[string]any {
	c.tb.Helper()
	r := c.do("GET", "/v1/campaigns/"+campaign+"/totals", "")
	if r.status != http.StatusOK {
		c.tb.Fatalf("totals: %d %s", r.status, r.body)
	}
	return r.json(c.tb)
}

// stream reads a campaign's SSE stream in the background and hands each
// totals event's data over a channel.
func (c *client) stream(campaign string) (<-chan map[string]any, func()) {
	c.tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/campaigns/"+campaign+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		c.tb.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		cancel()
		c.tb.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	out := make(chan map[string]any, 64)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "totals":
				var v map[string]any
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &v) == nil {
					select {
					case out <- v:
					default:
					}
				}
			}
		}
	}()
	return out, cancel
}

// keys returns an object's keys, for exact view checks.
func keys(v map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range v {
		out[k] = true
	}
	return out
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

// compactJSON is the body as one line, for error messages.
func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}
