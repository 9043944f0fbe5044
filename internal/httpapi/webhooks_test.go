package httpapi

// Tests of the webhook route against a hostile sender, over real HTTP on
// loopback, with the real Stripe verifier. A wrapper around each request
// body counts the bytes the handler reads, so that "the body was never
// read" is measured, not inferred.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

const testWebhookSecret = "whsec_httpapi_webhook_test"

// webhookNode is a Server with the real Stripe verifier on a loopback
// listener; applied counts the events handed to Apply and read the body
// bytes handlers read.
type webhookNode struct {
	addr    string
	metrics *metrics.Metrics
	applied atomic.Int64
	read    atomic.Int64
	// reading receives once per request, at the first byte its handler
	// reads, for the tests that wait for that moment; a notice that
	// finds it full (nobody is waiting) is dropped, never waited on: a
	// handler blocked here would hold its webhook slot for good.
	reading chan struct{}
}

func startWebhookNode(t *testing.T, change func(*Config)) *webhookNode {
	t.Helper()
	n := &webhookNode{metrics: metrics.New(), reading: make(chan struct{}, 100)}
	cfg := Config{
		Metrics: n.metrics,
		Events:  fgstripe.Webhooks{Secrets: []string{testWebhookSecret}},
		Apply: func(ctx context.Context, ev *floodgate.ProviderEvent) (bool, error) {
			n.applied.Add(1)
			return true, nil
		},
	}
	if change != nil {
		change(&cfg)
	}
	s := New(cfg)
	h := s.Handler()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A shallow copy keeps the server's own request, and so its
		// handling of an unread body, as it is.
		r = r.WithContext(r.Context())
		r.Body = &countingBody{ReadCloser: r.Body, n: &n.read, first: n.reading}
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: counted, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	n.addr = ln.Addr().String()
	return n
}

// countingBody counts what is read of a request body.
type countingBody struct {
	io.ReadCloser
	n     *atomic.Int64
	first chan struct{}
	once  sync.Once
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if n > 0 {
		b.once.Do(func() {
			select {
			case b.first <- struct{}{}:
			default:
			}
		})
	}
	return n, err
}

// testEvent renders a payment_intent.succeeded event as Stripe does,
// padded with trailing spaces (which JSON allows) to at least size bytes.
func testEvent(size int) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "evt_" + strconv.FormatInt(time.Now().UnixNano(), 36), "object": "event", "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "type": "payment_intent.succeeded", "livemode": false,
		"data": map[string]any{"object": map[string]any{"id": "pi_1", "object": "payment_intent", "amount": 2500,
			"currency": "eur", "status": "succeeded", "metadata": map[string]any{"donation_id": "don_1"}}},
	})
	if pad := size - len(b); pad > 0 {
		b = append(b, strings.Repeat(" ", pad)...)
	}
	return b
}

// testSign is the Stripe-Signature header Stripe writes for payload at at.
func testSign(at time.Time, payload []byte) string {
	m := hmac.New(sha256.New, []byte(testWebhookSecret))
	fmt.Fprintf(m, "%d.", at.Unix())
	m.Write(payload)
	return fmt.Sprintf("t=%d,v1=%s", at.Unix(), hex.EncodeToString(m.Sum(nil)))
}

// rawWebhook opens a connection and sends a webhook's request line and
// headers, declaring length bytes of body (-1: chunked), and the first
// part of the body. The caller sends the rest, or not.
func rawWebhook(t *testing.T, addr, signature string, length int, part []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // only so that a broken test cannot hang
	head := "POST /v1/webhooks/stripe HTTP/1.1\r\nHost: floodgate\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
	if signature != "" {
		head += "Stripe-Signature: " + signature + "\r\n"
	}
	if length >= 0 {
		head += "Content-Length: " + strconv.Itoa(length) + "\r\n"
	} else {
		head += "Transfer-Encoding: chunked\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	if len(part) > 0 {
		if _, err := c.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// answer reads one response from c.
func answer(t *testing.T, c net.Conn) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp, body
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// problemField returns the field a problem+json answer names.
func problemField(p map[string]any) string {
	errs, _ := p["errors"].([]any)
	if len(errs) != 1 {
		return ""
	}
	f, _ := errs[0].(map[string]any)
	s, _ := f["field"].(string)
	return s
}

// TestWebhookRefusedBeforeBody: a delivery whose Stripe-Signature could
// verify nothing is answered 400 naming the header while its body has
// not even been sent, and the handler reads none of it.
func TestWebhookRefusedBeforeBody(t *testing.T) {
	n := startWebhookNode(t, nil)
	sig := strings.Repeat("ab", 32)
	now := time.Now().Unix()
	for _, tt := range []struct {
		name, header, reason string
		length               int
	}{
		{"no header", "", "signature", 200 << 10},
		{"garbage", "garbage", "signature", 200 << 10},
		{"another scheme", "sha256=" + sig, "signature", 200 << 10},
		{"no timestamp", "v1=" + sig, "signature", 200 << 10},
		{"no v1", fmt.Sprintf("t=%d", now), "signature", 200 << 10},
		{"v1 not 64 hex digits", fmt.Sprintf("t=%d,v1=%s", now, sig[:40]), "signature", 200 << 10},
		{"test-mode v0 only", fmt.Sprintf("t=%d,v0=%s", now, sig), "signature", 200 << 10},
		{"stale", fmt.Sprintf("t=%d,v1=%s", now-3600, sig), "timestamp", 200 << 10},
		{"from the future", fmt.Sprintf("t=%d,v1=%s", now+3600, sig), "timestamp", 200 << 10},
		{"unsigned and a megabyte", "", "signature", 1 << 20},
		{"unsigned and chunked", "", "signature", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := counterValue(n.metrics.WebhookFailures.WithLabelValues(tt.reason))
			c := rawWebhook(t, n.addr, tt.header, tt.length, nil)
			resp, p := answer(t, c)
			if resp.StatusCode != http.StatusBadRequest || p["type"] != "validation_failed" || problemField(p) != "Stripe-Signature" {
				t.Fatalf("answer %d %v, want 400 naming Stripe-Signature", resp.StatusCode, p)
			}
			if !resp.Close {
				t.Error("the connection is kept open, with the unread body still to come on it")
			}
			if got := counterValue(n.metrics.WebhookFailures.WithLabelValues(tt.reason)); got != before+1 {
				t.Errorf("failures{reason=%q} = %v, want %v", tt.reason, got, before+1)
			}
		})
	}
	if got := n.read.Load(); got != 0 {
		t.Fatalf("handlers read %d body bytes of refused deliveries", got)
	}
	if n.applied.Load() != 0 {
		t.Fatal("a refused delivery was applied")
	}
}

// heapWatch samples the heap while a test runs: stop returns the bytes
// allocated in all since it started, and the most the heap in use grew
// above where it started, as far as samples every 10 ms saw. Garbage is
// collected early meanwhile (GOGC=10), so that the heap in use follows
// what is live rather than when the collector last ran.
func heapWatch() (stop func() (allocated uint64, grew int64)) {
	gcPercent := debug.SetGCPercent(10)
	runtime.GC()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	peak := start.HeapInuse
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() (uint64, int64) {
		close(done)
		<-sampled
		debug.SetGCPercent(gcPercent)
		var end runtime.MemStats
		runtime.ReadMemStats(&end)
		return end.TotalAlloc - start.TotalAlloc, int64(peak) - int64(start.HeapInuse)
	}
}

// slowSenders runs one sender per header at once. Each declares length
// bytes of body and sends them in 16 KiB slices, 5 ms apart, until the
// server answers or stops taking them; it returns each sender's answer
// (status and problem type).
func slowSenders(t *testing.T, addr string, headers []string, length int) (codes []int, types []string) {
	t.Helper()
	const slice = 16 << 10
	chunk := []byte(strings.Repeat("x", slice))
	codes, types = make([]int, len(headers)), make([]string, len(headers))
	var wg sync.WaitGroup
	for i, header := range headers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // only so that a broken test cannot hang
			head := "POST /v1/webhooks/stripe HTTP/1.1\r\nHost: floodgate\r\nContent-Type: application/json\r\n"
			if header != "" {
				head += "Stripe-Signature: " + header + "\r\n"
			}
			if _, err := fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n", head, length); err != nil {
				t.Error(err)
				return
			}
			answered := make(chan struct{})
			go func() {
				defer close(answered)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return
				}
				var p struct{ Type string }
				_ = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				codes[i], types[i] = resp.StatusCode, p.Type
			}()
			for sent := 0; sent < length; sent += slice {
				select {
				case <-answered:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if _, err := c.Write(chunk[:min(slice, length-sent)]); err != nil {
					break
				}
			}
			<-answered
		}()
	}
	wg.Wait()
	return codes, types
}

// TestWebhookSlowUnsignedBodiesKeepMemoryFlat: 200 senders at once, each
// declaring a megabyte behind no signature, a garbled one or a stale one
// and sending it in slow slices, make the server allocate next to
// nothing: each is answered 400 after its headers, and no body is read.
// (Reading them, as the server once did, allocates 200 MB and more.)
func TestWebhookSlowUnsignedBodiesKeepMemoryFlat(t *testing.T) {
	n := startWebhookNode(t, nil)
	var headers []string
	for i := range 200 {
		headers = append(headers, []string{"", "garbage", fmt.Sprintf("t=%d,v1=%s", time.Now().Unix()-3600, strings.Repeat("0", 64))}[i%3])
	}
	stop := heapWatch()
	codes, _ := slowSenders(t, n.addr, headers, 1<<20)
	allocated, grew := stop()
	t.Logf("%d unsigned megabyte deliveries: %.1f MB allocated in all, heap in use at most %.1f MB above the start; %d body bytes read",
		len(headers), float64(allocated)/1e6, float64(grew)/1e6, n.read.Load())
	for i, code := range codes {
		if code != http.StatusBadRequest {
			t.Fatalf("sender %d (Stripe-Signature %q): answer %d, want 400", i, headers[i], code)
		}
	}
	if n.read.Load() != 0 {
		t.Fatalf("handlers read %d body bytes of unsigned deliveries", n.read.Load())
	}
	if allocated > 20e6 {
		t.Fatalf("the process allocated %.1f MB for %d refused deliveries, want under 20 MB", float64(allocated)/1e6, len(headers))
	}
	if grew > 20e6 {
		t.Fatalf("heap in use grew by %.1f MB, want under 20 MB", float64(grew)/1e6)
	}
}

// TestWebhookSlowForgedBodiesStayBounded: a forged signature of the right
// form cannot be refused before its body is read, but 200 such senders
// at once, trickling bodies of the largest size taken, hold no more than
// the webhook slots' worth of memory (32 x 256 KiB): the rest are
// answered 503 unread, and those read fail verification.
func TestWebhookSlowForgedBodiesStayBounded(t *testing.T) {
	n := startWebhookNode(t, nil)
	var headers []string
	for range 200 {
		headers = append(headers, fmt.Sprintf("t=%d,v1=%s", time.Now().Unix(), strings.Repeat("0", 64)))
	}
	stop := heapWatch()
	codes, types := slowSenders(t, n.addr, headers, maxWebhookBody)
	_, grew := stop()
	busy := 0
	for i, code := range codes {
		switch {
		case code == http.StatusBadRequest:
		case code == http.StatusServiceUnavailable && types[i] == "overloaded":
			busy++
		default:
			t.Fatalf("sender %d: answer %d %s, want 400 or 503 overloaded", i, code, types[i])
		}
	}
	t.Logf("%d forged deliveries of %d bytes: %d refused busy; heap in use at most %.1f MB above the start",
		len(headers), maxWebhookBody, busy, float64(grew)/1e6)
	if busy == len(headers) {
		t.Fatal("every delivery was refused busy, none was read: the test proved nothing")
	}
	if grew > 20e6 {
		t.Fatalf("heap in use grew by %.1f MB, want under 20 MB", float64(grew)/1e6)
	}
	if n.applied.Load() != 0 {
		t.Fatal("a forged delivery was applied")
	}
}

// TestWebhookBusy: past its webhook slots, a correctly signed delivery is
// answered 503 with Retry-After at once, unread, and counted as busy;
// the deliveries holding the slots are then applied, and once they are
// done the next one is too.
func TestWebhookBusy(t *testing.T) {
	n := startWebhookNode(t, func(c *Config) { c.WebhookConcurrency = 2 })
	var held []net.Conn
	var rest [][]byte
	for range 2 {
		payload := testEvent(0)
		held = append(held, rawWebhook(t, n.addr, testSign(time.Now(), payload), len(payload), payload[:1]))
		rest = append(rest, payload[1:])
		select {
		case <-n.reading: // This delivery holds a slot: its body is being read.
		case <-time.After(60 * time.Second):
			t.Fatal("the server never started reading a delivery")
		}
	}

	payload := testEvent(0)
	c := rawWebhook(t, n.addr, testSign(time.Now(), payload), len(payload), payload)
	resp, p := answer(t, c)
	if resp.StatusCode != http.StatusServiceUnavailable || p["type"] != "overloaded" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("past the slots: %d %v %v, want 503 overloaded with Retry-After", resp.StatusCode, resp.Header, p)
	}
	if got := counterValue(n.metrics.WebhookFailures.WithLabelValues("busy")); got != 1 {
		t.Fatalf(`failures{reason="busy"} = %v, want 1`, got)
	}
	if got := n.read.Load(); got != 2 {
		t.Fatalf("%d body bytes read, want the 2 first bytes of the deliveries holding the slots", got)
	}

	for i, c := range held {
		if _, err := c.Write(rest[i]); err != nil {
			t.Fatal(err)
		}
		if resp, p := answer(t, c); resp.StatusCode != http.StatusOK || p["applied"] != true {
			t.Fatalf("delivery %d holding a slot: %d %v", i, resp.StatusCode, p)
		}
	}
	payload = testEvent(0)
	if resp, p := answer(t, rawWebhook(t, n.addr, testSign(time.Now(), payload), len(payload), payload)); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the slots freed: %d %v", resp.StatusCode, p)
	}
	if got := n.applied.Load(); got != 3 {
		t.Fatalf("%d events applied, want 3", got)
	}
}

// TestWebhookBodyLimit: an event of exactly maxWebhookBody bytes is
// applied; one byte more is 413, unread when its length is declared, and
// cut off at the limit when it is chunked.
func TestWebhookBodyLimit(t *testing.T) {
	n := startWebhookNode(t, nil)

	atLimit := testEvent(maxWebhookBody)
	if len(atLimit) != maxWebhookBody {
		t.Fatalf("event of %d bytes", len(atLimit))
	}
	if resp, p := answer(t, rawWebhook(t, n.addr, testSign(time.Now(), atLimit), len(atLimit), atLimit)); resp.StatusCode != http.StatusOK {
		t.Fatalf("an event of exactly %d bytes: %d %v", maxWebhookBody, resp.StatusCode, p)
	}

	over := testEvent(maxWebhookBody + 1)
	readBefore := n.read.Load()
	resp, p := answer(t, rawWebhook(t, n.addr, testSign(time.Now(), over), len(over), nil))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || p["type"] != "payload_too_large" {
		t.Fatalf("declared %d bytes: %d %v, want 413", len(over), resp.StatusCode, p)
	}
	if got := n.read.Load() - readBefore; got != 0 {
		t.Fatalf("%d bytes read of a body declared too large", got)
	}

	c := rawWebhook(t, n.addr, testSign(time.Now(), over), -1, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// One chunk holding the whole event; the server stops at the limit
		// and may close before it is all sent.
		_, _ = fmt.Fprintf(c, "%x\r\n", len(over))
		_, _ = c.Write(over)
		_, _ = io.WriteString(c, "\r\n0\r\n\r\n")
	}()
	resp, p = answer(t, c)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || p["type"] != "payload_too_large" {
		t.Fatalf("chunked %d bytes: %d %v, want 413", len(over), resp.StatusCode, p)
	}
	_ = c.Close()
	<-done
	if got := counterValue(n.metrics.WebhookFailures.WithLabelValues("too_large")); got != 2 {
		t.Fatalf(`failures{reason="too_large"} = %v, want 2`, got)
	}
	if n.applied.Load() != 1 {
		t.Fatalf("%d events applied, want the one at the limit", n.applied.Load())
	}
}

// TestWebhookSlowBodyGivesUpItsSlot: a correctly signed delivery whose
// body stops arriving is answered 400 naming the body once the read
// deadline passes, and its slot is free again for the next delivery.
func TestWebhookSlowBodyGivesUpItsSlot(t *testing.T) {
	n := startWebhookNode(t, func(c *Config) { c.WebhookConcurrency, c.WebhookReadTimeout = 1, 200*time.Millisecond })
	payload := testEvent(0)
	c := rawWebhook(t, n.addr, testSign(time.Now(), payload), len(payload), payload[:len(payload)/2])
	resp, p := answer(t, c)
	if resp.StatusCode != http.StatusBadRequest || problemField(p) != "body" || !resp.Close {
		t.Fatalf("a stalled body: %d %v (close %v), want 400 naming body and the connection closed", resp.StatusCode, p, resp.Close)
	}
	if got := counterValue(n.metrics.WebhookFailures.WithLabelValues("read")); got != 1 {
		t.Fatalf(`failures{reason="read"} = %v, want 1`, got)
	}
	payload = testEvent(0)
	if resp, p := answer(t, rawWebhook(t, n.addr, testSign(time.Now(), payload), len(payload), payload)); resp.StatusCode != http.StatusOK {
		t.Fatalf("the next delivery: %d %v", resp.StatusCode, p)
	}
}
