package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// logCapture keeps what the sandbox logs, for tests to read.
type logCapture struct {
	mu      sync.Mutex
	records []slog.Record
}

func newLogCapture() *logCapture { return &logCapture{} }

func (c *logCapture) logger() *slog.Logger { return slog.New(c) }

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, r.Clone())
	return nil
}

// find returns the records at level whose message contains msg.
func (c *logCapture) find(level slog.Level, msg string) []slog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []slog.Record
	for _, r := range c.records {
		if r.Level == level && strings.Contains(r.Message, msg) {
			out = append(out, r)
		}
	}
	return out
}

func (c *logCapture) count(level slog.Level, msg string) int { return len(c.find(level, msg)) }

// atLeast counts the records at level or above.
func (c *logCapture) atLeast(level slog.Level) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.records {
		if r.Level >= level {
			n++
		}
	}
	return n
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, r := range c.records {
		fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		b.WriteByte('\n')
	}
	return b.String()
}

// attr returns the value of key in r.
func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// faultyFile is a journal file that fails on command, as a full or failing
// disk does: a write that stores only part of its bytes and then reports
// ENOSPC, a failed fsync, a failed truncate.
type faultyFile struct {
	journalFile
	// shortWrites is how many coming writes fail; keep says how many of
	// their bytes they store (default half).
	shortWrites   atomic.Int32
	keep          func(b []byte) int
	failSyncs     atomic.Int32
	failTruncates atomic.Int32
}

// take uses up one of the faults counted in n, if any is left.
func take(n *atomic.Int32) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

func (f *faultyFile) Write(b []byte) (int, error) {
	if take(&f.shortWrites) {
		n := len(b) / 2
		if f.keep != nil {
			n = f.keep(b)
		}
		w, err := f.journalFile.Write(b[:n])
		if err != nil {
			return w, err
		}
		return w, &fs.PathError{Op: "write", Path: "journal", Err: syscall.ENOSPC}
	}
	return f.journalFile.Write(b)
}

func (f *faultyFile) Sync() error {
	if take(&f.failSyncs) {
		return &fs.PathError{Op: "sync", Path: "journal", Err: syscall.EIO}
	}
	return f.journalFile.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	if take(&f.failTruncates) {
		return &fs.PathError{Op: "truncate", Path: "journal", Err: syscall.EIO}
	}
	return f.journalFile.Truncate(size)
}

// injectFaults puts a faultyFile in front of s's journal file.
func injectFaults(tb testing.TB, s *Server) *faultyFile {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal == nil {
		tb.Fatal("the sandbox has no journal")
	}
	ff := &faultyFile{journalFile: s.journal.f}
	s.journal.f = ff
	return ff
}

func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// journalLines reads the journal and checks that every line is a whole,
// valid record.
func journalLines(tb testing.TB, path string) [][]byte {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		tb.Errorf("the journal ends without a newline: %q", raw[max(0, len(raw)-60):])
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, maxRecord+1)
	for sc.Scan() {
		line := bytes.Clone(sc.Bytes())
		if _, ok := decodeRecord(line); !ok {
			tb.Errorf("journal line %d is not a whole record: %q", len(lines)+1, line)
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return lines
}

// failedDurably asserts that err is the sandbox's answer to a change the
// journal refused: a 500 that may be resent.
func failedDurably(tb testing.TB, err error) {
	tb.Helper()
	pe := providerError(tb, err, floodgate.ProviderServer)
	if pe.HTTPStatus != 500 || pe.ShouldRetry == nil || !*pe.ShouldRetry {
		tb.Errorf("journal failure answered %+v, want 500 with Stripe-Should-Retry: true", pe)
	}
}

func TestJournalShortWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	clock := newTestClock()
	log := newLogCapture()
	e := newEnv(t, Options{StatePath: path, Clock: clock, Logger: log.logger()})
	p1, err := e.charge(t, "don_1", "pm_card_visa", "k1")
	if err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, path)
	ff := injectFaults(t, e.s)

	// The disk fills in the middle of the write: half the bytes land, the
	// write reports ENOSPC.
	ff.shortWrites.Store(1)
	_, err = e.charge(t, "don_2", "pm_card_visa", "k2")
	failedDurably(t, err)
	if got := fileSize(t, path); got != size {
		t.Errorf("journal is %d bytes after the failed write, want it cut back to %d", got, size)
	}
	l := e.s.Ledger()
	if len(l.PaymentIntents) != 1 || l.ByDonation["don_2"] != nil {
		t.Errorf("the refused PaymentIntent is still claimed in memory: %+v", l.PaymentIntents)
	}
	if log.count(slog.LevelError, "sandbox journal write failed") != 1 {
		t.Errorf("the failed write was not logged:\n%s", log)
	}

	// The key was released with the change: resent once the disk has
	// room, it executes.
	p2, err := e.charge(t, "don_2", "pm_card_visa", "k2")
	if err != nil || p2.Status != floodgate.PaymentSucceeded {
		t.Fatalf("resent after the full disk: %+v, %v", p2, err)
	}

	// An fsync that fails is undone the same way.
	ff.failSyncs.Store(1)
	_, err = e.charge(t, "don_3", "pm_card_visa", "k3")
	failedDurably(t, err)
	p3, err := e.charge(t, "don_3", "pm_card_visa", "k3")
	if err != nil {
		t.Fatal(err)
	}
	p4, err := e.charge(t, "don_4", "pm_card_visa", "k4")
	if err != nil {
		t.Fatal(err)
	}
	before := e.s.Ledger()
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}

	// Every line is whole, and the restart holds exactly what was
	// acknowledged, without a warning.
	journalLines(t, path)
	log2 := newLogCapture()
	e2 := newEnv(t, Options{StatePath: path, Clock: clock, Logger: log2.logger()})
	after := e2.s.Ledger()
	ids := func(l Ledger) []string {
		var out []string
		for _, pi := range l.PaymentIntents {
			out = append(out, pi.ID)
		}
		slices.Sort(out)
		return out
	}
	want := []string{p1.ID, p2.ID, p3.ID, p4.ID}
	slices.Sort(want)
	if !slices.Equal(ids(after), want) || !slices.Equal(ids(before), want) || len(after.ChargedTwice) != 0 {
		t.Errorf("after restart %v (before %v), want %v; charged twice %v", ids(after), ids(before), want, after.ChargedTwice)
	}
	if n := log2.atLeast(slog.LevelWarn); n != 0 {
		t.Errorf("a clean journal gave %d warnings:\n%s", n, log2)
	}
	again, err := e2.charge(t, "don_2", "pm_card_visa", "k2")
	if err != nil || again.ID != p2.ID {
		t.Errorf("k2 after restart: %+v, %v; want a replay of %s", again, err, p2.ID)
	}
}

func TestJournalCutFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	clock := newTestClock()
	log := newLogCapture()
	e := newEnv(t, Options{StatePath: path, Clock: clock, Logger: log.logger()})
	p1, err := e.charge(t, "don_1", "pm_card_visa", "k1")
	if err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, path)
	ff := injectFaults(t, e.s)

	// The write is cut short and the undo fails too: loud, and every
	// later write is refused while the torn bytes stay.
	ff.shortWrites.Store(1)
	ff.failTruncates.Store(2)
	_, err = e.charge(t, "don_2", "pm_card_visa", "k2")
	failedDurably(t, err)
	if log.count(slog.LevelError, "SANDBOX JOURNAL DAMAGED") != 1 {
		t.Errorf("a failed undo was not logged loudly:\n%s", log)
	}
	_, err = e.charge(t, "don_3", "pm_card_visa", "k3")
	failedDurably(t, err)
	if got := fileSize(t, path); got <= size {
		t.Fatalf("journal is %d bytes; the test meant to leave torn bytes past %d", got, size)
	}

	// Once the cut works, writes go on from a clean line.
	p3, err := e.charge(t, "don_3", "pm_card_visa", "k3")
	if err != nil {
		t.Fatal(err)
	}
	if log.count(slog.LevelWarn, "cut off at last") != 1 {
		t.Errorf("the recovery was not logged:\n%s", log)
	}
	e.s.Close()
	if lines := journalLines(t, path); len(lines) != 8 {
		t.Errorf("journal has %d lines, want 8 (two PaymentIntents, their keys and two events each)", len(lines))
	}
	e2 := newEnv(t, Options{StatePath: path, Clock: clock})
	l := e2.s.Ledger()
	if len(l.PaymentIntents) != 2 || l.ByDonation["don_1"][0] != p1.ID || l.ByDonation["don_3"][0] != p3.ID {
		t.Errorf("after restart: %+v", l.PaymentIntents)
	}
}

func TestJournalCutFailsThenRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fault makes the next append fail in a way that cannot be
		// undone.
		fault func(ff *faultyFile)
		// survives says whether the refused change is whole on disk,
		// so that a restart brings it back.
		survives bool
	}{
		{name: "torn mid-record", fault: func(ff *faultyFile) { ff.shortWrites.Store(1) }},
		{name: "torn after the first record of the group", fault: func(ff *faultyFile) {
			ff.keep = func(b []byte) int { return bytes.IndexByte(b, '\n') + 1 }
			ff.shortWrites.Store(1)
		}},
		{name: "written whole, fsync failed", fault: func(ff *faultyFile) { ff.failSyncs.Store(1) }, survives: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sandbox.jsonl")
			clock := newTestClock()
			e := newEnv(t, Options{StatePath: path, Clock: clock})
			p1, err := e.charge(t, "don_1", "pm_card_visa", "k1")
			if err != nil {
				t.Fatal(err)
			}
			size := fileSize(t, path)
			ff := injectFaults(t, e.s)
			tc.fault(ff)
			ff.failTruncates.Store(1 << 20)
			_, err = e.charge(t, "don_2", "pm_card_visa", "k2")
			failedDurably(t, err)
			e.s.Close()
			left := fileSize(t, path)

			// The process stops while the file still ends in the
			// failed write: the start succeeds all the same.
			log := newLogCapture()
			e2 := newEnv(t, Options{StatePath: path, Clock: clock, Logger: log.logger()})
			l := e2.s.Ledger()
			if l.ByDonation["don_1"][0] != p1.ID || len(l.ChargedTwice) != 0 {
				t.Fatalf("after restart: %+v", l)
			}
			p2, err := e2.charge(t, "don_2", "pm_card_visa", "k2")
			if err != nil {
				t.Fatal(err)
			}
			l = e2.s.Ledger()
			if got := len(l.ByDonation["don_2"]); got != 1 || len(l.ChargedTwice) != 0 {
				t.Errorf("don_2 has %d PaymentIntents after the retry, want 1", got)
			}
			if tc.survives {
				// The whole group came back, key included: the
				// retry of the 500 replays it rather than charging
				// again.
				if l.Counts.Replays != 1 {
					t.Errorf("the surviving change was not replayed: %+v", l.Counts)
				}
				if n := log.atLeast(slog.LevelWarn); n != 0 {
					t.Errorf("%d warnings for a whole journal:\n%s", n, log)
				}
				return
			}
			if l.Counts.Replays != 0 || p2.ID == "" {
				t.Errorf("the torn change came back: %+v", l.Counts)
			}
			// Everything past the last acknowledged change is dropped,
			// from its offset on, and said so.
			drops := log.find(slog.LevelWarn, "dropping damaged bytes")
			summary := log.find(slog.LevelWarn, "sandbox journal was damaged")
			if len(drops) == 0 || attr(drops[0], "offset").Int64() != size ||
				len(summary) != 1 || attr(summary[0], "dropped_bytes").Int64() != left-size {
				t.Errorf("want warnings for %d bytes dropped from offset %d:\n%s", left-size, size, log)
			}
		})
	}
}

// stateOf describes what s holds, for comparing before and after an undo:
// every object, the indexes, the list order, the keys and the events.
func stateOf(tb testing.TB, s *Server) string {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	index := func(m map[string]*paymentIntent) map[string]string {
		out := map[string]string{}
		for k, pi := range m {
			out[k] = pi.ID
		}
		return out
	}
	var order []string
	for _, pi := range s.order {
		order = append(order, pi.ID)
	}
	keys := slices.Sorted(maps.Keys(s.idem.m))
	b, err := json.Marshal(map[string]any{
		"records": s.snapshot(), "charges": index(s.charges), "refunds": index(s.refunds),
		"order": order, "keys": keys, "events": s.stats.Events,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestJournalUndo refuses each kind of change the sandbox journals and
// checks that memory is left exactly as before, that a resend then works,
// and that the journal then holds what memory claims.
func TestJournalUndo(t *testing.T) {
	type fixture struct {
		pi     string // a PaymentIntent made by setup
		secret string
		pm     string // a tokenised payment method
	}
	create := func(t *testing.T, e *env, pm string, confirm bool) map[string]any {
		t.Helper()
		form := url.Values{"amount": {"2500"}, "currency": {"eur"}, "metadata[donation_id]": {"setup"},
			"automatic_payment_methods[enabled]": {"true"}, "automatic_payment_methods[allow_redirects]": {"never"}}
		if pm != "" {
			form.Set("payment_method", pm)
		}
		if confirm {
			form.Set("confirm", "true")
		}
		status, _, body := e.do(t, "POST", "/v1/payment_intents", testKey, "", form)
		if status != 200 {
			t.Fatalf("setup: %d %v", status, body)
		}
		return body
	}
	tokenise := func(t *testing.T, e *env) string {
		t.Helper()
		pm, err := e.api.V1PaymentMethods.Create(context.Background(), &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
			Card: &stripe.PaymentMethodCreateCardParams{Token: stripe.String("tok_visa")}})
		if err != nil {
			t.Fatal(err)
		}
		return pm.ID
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, e *env) fixture
		// op makes the change under idempotency key k and returns the
		// HTTP status.
		op   func(t *testing.T, e *env, f fixture, k string) int
		want int // the status once the journal takes the change
	}{
		{name: "create and charge", want: 200,
			op: func(t *testing.T, e *env, _ fixture, k string) int {
				_, err := e.charge(t, "don", "pm_card_visa", k)
				if err != nil {
					return providerError(t, err, floodgate.ProviderServer).HTTPStatus
				}
				return 200
			}},
		{name: "create and decline", want: 402,
			op: func(t *testing.T, e *env, _ fixture, k string) int {
				_, err := e.charge(t, "don", "pm_card_chargeDeclined", k)
				var pe *floodgate.ProviderError
				if !errors.As(err, &pe) {
					t.Fatalf("decline: %v", err)
				}
				return pe.HTTPStatus
			}},
		{name: "create needing 3-D Secure", want: 200,
			op: func(t *testing.T, e *env, _ fixture, k string) int {
				_, err := e.charge(t, "don", "pm_card_authenticationRequired", k)
				if err != nil {
					return providerError(t, err, floodgate.ProviderServer).HTTPStatus
				}
				return 200
			}},
		{name: "create with a tokenised card", want: 200,
			setup: func(t *testing.T, e *env) fixture { return fixture{pm: tokenise(t, e)} },
			op: func(t *testing.T, e *env, f fixture, k string) int {
				_, err := e.charge(t, "don", f.pm, k)
				if err != nil {
					return providerError(t, err, floodgate.ProviderServer).HTTPStatus
				}
				return 200
			}},
		{name: "confirm", want: 200,
			setup: func(t *testing.T, e *env) fixture { return fixture{pi: create(t, e, "", false)["id"].(string)} },
			op: func(t *testing.T, e *env, f fixture, k string) int {
				status, _, _ := e.do(t, "POST", "/v1/payment_intents/"+f.pi+"/confirm", testKey, k,
					url.Values{"payment_method": {"pm_card_visa"}, "return_url": {"https://example.org/back"}})
				return status
			}},
		{name: "cancel", want: 200,
			setup: func(t *testing.T, e *env) fixture { return fixture{pi: create(t, e, "", false)["id"].(string)} },
			op: func(t *testing.T, e *env, f fixture, k string) int {
				status, _, _ := e.do(t, "POST", "/v1/payment_intents/"+f.pi+"/cancel", testKey, k, url.Values{})
				return status
			}},
		{name: "refund", want: 200,
			setup: func(t *testing.T, e *env) fixture {
				return fixture{pi: create(t, e, "pm_card_visa", true)["id"].(string)}
			},
			op: func(t *testing.T, e *env, f fixture, k string) int {
				status, _, _ := e.do(t, "POST", "/v1/refunds", testKey, k, url.Values{"payment_intent": {f.pi}, "amount": {"100"}})
				return status
			}},
		{name: "tokenise", want: 200,
			op: func(t *testing.T, e *env, _ fixture, k string) int {
				status, _, _ := e.do(t, "POST", "/v1/payment_methods", testKey, k, url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})
				return status
			}},
		{name: "injected failure", want: 599,
			setup: func(t *testing.T, e *env) fixture {
				cfg := e.s.Config()
				cfg.FailRate = 1
				if err := e.s.SetConfig(cfg); err != nil {
					t.Fatal(err)
				}
				return fixture{}
			},
			op: func(t *testing.T, e *env, _ fixture, k string) int {
				status, h, _ := e.do(t, "POST", "/v1/payment_methods", testKey, k, url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})
				if status == 500 && h.Get("Stripe-Should-Retry") == "false" {
					return 599 // the injected 500, told apart from the journal's
				}
				return status
			}},
		{name: "3-D Secure completed", want: 200,
			setup: func(t *testing.T, e *env) fixture {
				pi := create(t, e, "pm_card_authenticationRequired", true)
				return fixture{pi: pi["id"].(string), secret: pi["client_secret"].(string)}
			},
			op: func(t *testing.T, e *env, f fixture, _ string) int {
				status, _, _ := e.do(t, "POST", "/_sandbox/3ds/"+f.pi+"/complete", "", "", url.Values{"client_secret": {f.secret}})
				return status
			}},
		{name: "dispute", want: 200,
			setup: func(t *testing.T, e *env) fixture {
				return fixture{pi: create(t, e, "pm_card_visa", true)["id"].(string)}
			},
			op: func(t *testing.T, e *env, f fixture, _ string) int {
				status, _, _ := e.do(t, "POST", "/_sandbox/payment_intents/"+f.pi+"/dispute", "", "", url.Values{})
				return status
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sandbox.jsonl")
			clock := newTestClock()
			e := newEnv(t, Options{StatePath: path, Clock: clock,
				WebhookURL: "http://hooks.test/stripe", WebhookSecret: "whsec_test", WebhookClient: acceptAll, WebhookEvents: []string{"*"}})
			var f fixture
			if tc.setup != nil {
				f = tc.setup(t, e)
			}
			// The setup's events are delivered first: a delivery
			// marks its event, which is state too.
			eventually(t, "the setup's webhooks sent", func() bool { return e.s.Ledger().Counts.WebhooksPending == 0 })
			before := stateOf(t, e.s)
			size := fileSize(t, path)
			ff := injectFaults(t, e.s)
			ff.shortWrites.Store(1)
			if status := tc.op(t, e, f, "key"); status != 500 {
				t.Fatalf("with the disk full: %d, want 500", status)
			}
			if ff.shortWrites.Load() != 0 {
				t.Fatal("the change never reached the journal")
			}
			if after := stateOf(t, e.s); after != before {
				t.Errorf("memory after the refused change:\n%s\nwant as before:\n%s", after, before)
			}
			if got := fileSize(t, path); got != size {
				t.Errorf("journal is %d bytes, want %d", got, size)
			}
			if status := tc.op(t, e, f, "key"); status != tc.want {
				t.Fatalf("resent: %d, want %d", status, tc.want)
			}
			// Only the events of changes that happened were sent: every
			// answer is written after its events are queued, and the
			// queue is sent in order.
			eventually(t, "webhooks sent", func() bool { return e.s.Ledger().Counts.WebhooksPending == 0 })
			if c := e.s.Ledger().Counts; c.WebhooksDelivered != c.Events {
				t.Errorf("%d webhooks sent for %d events", c.WebhooksDelivered, c.Events)
			}
			memory := stateOf(t, e.s)
			e.s.Close()
			e2 := newEnv(t, Options{StatePath: path, Clock: clock})
			// Counts of events are not journaled; the rest is.
			strip := func(s string) string {
				var m map[string]any
				if err := json.Unmarshal([]byte(s), &m); err != nil {
					t.Fatal(err)
				}
				delete(m, "events")
				b, _ := json.Marshal(m)
				return string(b)
			}
			if got := stateOf(t, e2.s); strip(got) != strip(memory) {
				t.Errorf("journal after restart:\n%s\nwant what memory held:\n%s", got, memory)
			}
		})
	}
}

// roundTripFunc answers webhook deliveries in-process.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// acceptAll is a webhook endpoint that takes every event.
var acceptAll = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
})}
