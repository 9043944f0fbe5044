package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/clocktest"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

func TestJournalRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	clock := newTestClock()
	ctx := context.Background()

	e1 := newEnv(t, Options{StatePath: path, Clock: clock})
	ok, err := e1.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil {
		t.Fatal(err)
	}
	pm, err := e1.api.V1PaymentMethods.Create(ctx, &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Token: stripe.String("tok_visa")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e1.charge(t, "don_2", pm.ID, "don_2:1"); err != nil {
		t.Fatal(err)
	}
	auth, err := e1.charge(t, "don_3", "pm_card_authenticationRequired", "don_3:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e1.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(ok.ID), Amount: stripe.Int64(100)}); err != nil {
		t.Fatal(err)
	}
	before := e1.s.Ledger()
	if err := e1.s.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := newEnv(t, Options{StatePath: path, Clock: clock})
	after := e2.s.Ledger()
	if !reflect.DeepEqual(before.PaymentIntents, after.PaymentIntents) || !reflect.DeepEqual(before.ByDonation, after.ByDonation) {
		t.Fatalf("ledger after restart:\n%+v\nwant\n%+v", after.PaymentIntents, before.PaymentIntents)
	}
	got, err := e2.pay.Payment(ctx, ok.ID)
	if err != nil || got.Status != floodgate.PaymentSucceeded || got.ClientSecret != ok.ClientSecret {
		t.Fatalf("retrieve after restart: %+v, %v", got, err)
	}
	// The key is remembered: the same request replays, charging nothing.
	again, err := e2.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil || again.ID != ok.ID {
		t.Fatalf("replay after restart: %+v, %v", again, err)
	}
	if c := e2.s.Ledger().Counts; c.Replays != 1 || c.PaymentIntents != 3 {
		t.Errorf("counts after replay: %+v", c)
	}
	// The used payment method stays used; the 3-D Secure challenge can
	// still be completed.
	_, err = e2.charge(t, "don_4", pm.ID, "don_4:1")
	providerError(t, err, floodgate.ProviderIdempotency)
	if status, _, body := e2.do(t, "POST", "/_sandbox/3ds/"+auth.ID+"/complete", "", "", map[string][]string{"client_secret": {auth.ClientSecret}}); status != 200 || body["status"] != "succeeded" {
		t.Errorf("3-D Secure after restart: %d %v", status, body)
	}
	// New PaymentIntents sort after the old ones.
	next, err := e2.charge(t, "don_5", "pm_card_visa", "don_5:1")
	if err != nil {
		t.Fatal(err)
	}
	all, err := floodgate.AllPayments(ctx, e2.pay, floodgate.PaymentQuery{})
	if err != nil || len(all) != 4 || all[0].ID != next.ID {
		t.Errorf("list after restart: %d, %v", len(all), err)
	}
}

func TestJournalTornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	clock := newTestClock()
	e1 := newEnv(t, Options{StatePath: path, Clock: clock})
	p, err := e1.charge(t, "don_1", "pm_card_visa", "k")
	if err != nil {
		t.Fatal(err)
	}
	e1.s.Close()
	// A crash in the middle of a write leaves half a line.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"k":"pi","pi":{"id":"pi_torn`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e2 := newEnv(t, Options{StatePath: path, Clock: clock})
	if l := e2.s.Ledger(); len(l.PaymentIntents) != 1 || l.PaymentIntents[0].ID != p.ID {
		t.Fatalf("after a torn record: %+v", l.PaymentIntents)
	}
	if _, err := e2.charge(t, "don_2", "pm_card_visa", "k2"); err != nil {
		t.Fatal(err)
	}
	e2.s.Close()
	e3 := newEnv(t, Options{StatePath: path, Clock: clock})
	if l := e3.s.Ledger(); len(l.PaymentIntents) != 2 {
		t.Errorf("records after the torn one were lost: %d", len(l.PaymentIntents))
	}

	// A line with no record in the middle is dropped with a warning: the
	// start goes on with everything else.
	log := newLogCapture()
	if err := os.WriteFile(path, []byte("{\"k\":\"pi\"\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{StatePath: path, Clock: clock, Logger: log.logger()})
	if err != nil {
		t.Fatalf("a damaged journal stopped the start: %v", err)
	}
	s.Close()
	if n := log.count(slog.LevelWarn, "dropping damaged bytes"); n != 2 {
		t.Errorf("%d warnings about dropped lines, want 2:\n%s", n, log)
	}
}

func TestJournalCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	clock := newTestClock()
	e1 := newEnv(t, Options{StatePath: path, Clock: clock})
	for i := range 5 {
		// Each PaymentIntent is written twice (declined, then confirmed
		// again), so the journal holds stale records to drop.
		_, err := e1.charge(t, "don", "pm_card_chargeDeclined", string(rune('a'+i)))
		pi := providerError(t, err, floodgate.ProviderCard).Payment
		if _, err := e1.pay.Charge(context.Background(), floodgate.ChargeRequest{PaymentIntentID: pi.ID, PaymentMethod: "pm_card_visa", IdempotencyKey: string(rune('A' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	before := e1.s.Ledger()
	e1.s.mu.Lock()
	records := e1.s.journal.records
	err := e1.s.journal.compact(e1.s.snapshot())
	compacted := e1.s.journal.records
	e1.s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// Per PaymentIntent: the decline writes it, its key and two events
	// (created, payment_failed); the second confirmation it, its key and
	// one event (succeeded). Compacted, the stale PaymentIntent goes.
	if records != 35 || compacted != 30 {
		t.Errorf("records %d -> %d, want 35 -> 30 (5 PaymentIntents, 10 keys, 15 events)", records, compacted)
	}
	// Writes after compaction land in the new file.
	if _, err := e1.charge(t, "don", "pm_card_visa", "z"); err != nil {
		t.Fatal(err)
	}
	e1.s.Close()
	e2 := newEnv(t, Options{StatePath: path, Clock: clock})
	after := e2.s.Ledger()
	if len(after.PaymentIntents) != len(before.PaymentIntents)+1 || !reflect.DeepEqual(after.PaymentIntents[:5], before.PaymentIntents) {
		t.Errorf("state after compaction differs")
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

// line renders recs as journal lines, as append writes them: a group
// when there is more than one.
func line(tb testing.TB, recs ...record) []byte {
	tb.Helper()
	var out []byte
	for i, r := range recs {
		if len(recs) > 1 {
			r.I, r.N = i+1, len(recs)
		}
		b, err := json.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(append(out, b...), '\n')
	}
	return out
}

func piRecord(id string, seq int64) record {
	return record{Kind: "pi", PI: &paymentIntent{Seq: seq, ID: id, ClientSecret: id + "_secret_x", Amount: 2500, Currency: "eur",
		Status: statusRequiresPaymentMethod, Created: 1_700_000_000 + seq, Types: []string{"card"}, CaptureMethod: "automatic",
		Metadata: map[string]string{"donation_id": "don_" + id, "k": "a nested object that starts like a record"}}}
}

func idemRecord(key string, now time.Time) record {
	return record{Kind: "idem", Idem: &idemEntry{Scope: "scope", Key: key, Fingerprint: "fp", RequestID: "req_1",
		Created: now, Status: 200, Body: []byte("{}\n")}}
}

// piIDs lists the PaymentIntents s holds, sorted.
func piIDs(s *Server) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.pis))
}

// openDamaged writes raw as the journal, starts a sandbox on it and checks
// that the start succeeded, that the journal was rewritten clean (and
// reads without a warning), and that the damaged journal was kept.
func openDamaged(t *testing.T, raw []byte, clock *testClock) (*Server, *logCapture) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	log := newLogCapture()
	s, err := New(Options{StatePath: path, Clock: clock, Logger: log.logger()})
	if err != nil {
		t.Fatalf("a damaged journal stopped the start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if sum := log.find(slog.LevelWarn, "sandbox journal was damaged"); len(sum) != 1 || !attr(sum[0], "rewritten").Bool() {
		t.Errorf("no warning that the journal was damaged and rewritten:\n%s", log)
	}
	journalLines(t, path)
	if kept, err := os.ReadFile(path + ".damaged"); err != nil || !bytes.Equal(kept, raw) {
		t.Errorf("the damaged journal was not kept as it was: %v", err)
	}
	log2 := newLogCapture()
	s2, err := New(Options{StatePath: path, Clock: clock, Logger: log2.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := log2.atLeast(slog.LevelWarn); n != 0 {
		t.Errorf("the rewritten journal still gives %d warnings:\n%s", n, log2)
	}
	if got, want := piIDs(s2), piIDs(s); !slices.Equal(got, want) {
		t.Errorf("the rewritten journal holds %v, the repaired state %v", got, want)
	}
	return s, log
}

// TestJournalTornInTheMiddle is a full disk as seen from outside: a write
// cut mid-record, then appends that succeeded after it, all on one line.
func TestJournalTornInTheMiddle(t *testing.T) {
	clock := newTestClock()
	t.Run("groups written by the sandbox", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sandbox.jsonl")
		e := newEnv(t, Options{StatePath: path, Clock: clock})
		var want []string
		for i := range 3 {
			p, err := e.charge(t, fmt.Sprintf("don_%d", i), "pm_card_visa", fmt.Sprintf("k%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if i != 1 {
				want = append(want, p.ID)
			}
		}
		e.s.Close()
		// Each charge writes its PaymentIntent, its key and two
		// events (created, succeeded) as one group.
		const perCharge = 4
		lines := journalLines(t, path)
		if len(lines) != 3*perCharge {
			t.Fatalf("%d lines, want %d (a PaymentIntent, its key and two events per charge)", len(lines), 3*perCharge)
		}
		// The second charge's write stopped 40 bytes in; the third
		// was appended right after.
		var raw []byte
		for _, l := range lines[:perCharge] {
			raw = append(append(raw, l...), '\n')
		}
		at := int64(len(raw))
		raw = append(raw, lines[perCharge][:40]...)
		for _, l := range lines[2*perCharge:] {
			raw = append(append(raw, l...), '\n')
		}
		s, log := openDamaged(t, raw, clock)
		slices.Sort(want)
		if got := piIDs(s); !slices.Equal(got, want) {
			t.Errorf("after repair: %v, want %v", got, want)
		}
		drops := log.find(slog.LevelWarn, "dropping damaged bytes")
		if len(drops) != 1 || attr(drops[0], "offset").Int64() != at || attr(drops[0], "bytes").Int64() != 40 {
			t.Errorf("want one warning for 40 bytes at offset %d:\n%s", at, log)
		}
		// The key of the surviving change still answers.
		if l := s.Ledger(); len(l.PaymentIntents) != 2 || len(l.ChargedTwice) != 0 {
			t.Errorf("ledger after repair: %+v", l)
		}
		if n := len(s.idem.m); n != 2 {
			t.Errorf("%d keys after repair, want 2", n)
		}
	})
	t.Run("single records", func(t *testing.T) {
		a, b, c := line(t, piRecord("pi_a", 1)), line(t, piRecord("pi_b", 2)), line(t, piRecord("pi_c", 3))
		raw := slices.Concat(a, b[:len(b)/2], b[:17], c, line(t, piRecord("pi_d", 4)))
		s, log := openDamaged(t, raw, clock)
		if got := piIDs(s); !slices.Equal(got, []string{"pi_a", "pi_c", "pi_d"}) {
			t.Errorf("after repair: %v", got)
		}
		drops := log.find(slog.LevelWarn, "dropping damaged bytes")
		if len(drops) != 1 || attr(drops[0], "offset").Int64() != int64(len(a)) || attr(drops[0], "bytes").Int64() != int64(len(b)/2+17) {
			t.Errorf("want one warning for %d bytes at offset %d:\n%s", len(b)/2+17, len(a), log)
		}
	})
	t.Run("a whole record without its newline", func(t *testing.T) {
		// Everything but the newline was written: the append still
		// failed, so its record is not brought back.
		a, b := line(t, piRecord("pi_a", 1)), line(t, piRecord("pi_b", 2))
		raw := slices.Concat(a, b[:len(b)-1], line(t, piRecord("pi_c", 3)))
		s, _ := openDamaged(t, raw, clock)
		if got := piIDs(s); !slices.Equal(got, []string{"pi_a", "pi_c"}) {
			t.Errorf("after repair: %v", got)
		}
	})
}

func TestJournalGroups(t *testing.T) {
	clock := newTestClock()
	now := clock.Now()
	pmB := record{Kind: "pm", PM: &paymentMethod{ID: "pm_b", Card: "visa", Created: 1, ExpMonth: 12, ExpYear: 2040}}
	c := line(t, piRecord("pi_c", 3))
	raw := slices.Concat(
		line(t, piRecord("pi_a", 1), idemRecord("k_a", now)),
		// A group of three cut after two records, then a later change.
		bytes.SplitAfterN(line(t, piRecord("pi_b", 2), pmB, idemRecord("k_b", now)), []byte("\n"), 3)[0],
		bytes.SplitAfterN(line(t, piRecord("pi_b", 2), pmB, idemRecord("k_b", now)), []byte("\n"), 3)[1],
		c,
		// The end of a group whose beginning is missing.
		bytes.SplitAfterN(line(t, piRecord("pi_x", 9), piRecord("pi_d", 4)), []byte("\n"), 2)[1],
		line(t, piRecord("pi_e", 5), idemRecord("k_e", now)),
	)
	s, log := openDamaged(t, raw, clock)
	if got := piIDs(s); !slices.Equal(got, []string{"pi_a", "pi_c", "pi_e"}) {
		t.Errorf("after repair: %v", got)
	}
	if _, ok := s.pms["pm_b"]; ok || len(s.idem.m) != 2 {
		t.Errorf("part of a cut group survived: pm_b %v, %d keys", ok, len(s.idem.m))
	}
	if n := log.count(slog.LevelWarn, "dropping damaged bytes"); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, log)
	}

	// A group cut at the end of the file is cut off the file, as a torn
	// last line is: no rewrite needed.
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	whole := line(t, piRecord("pi_a", 1), idemRecord("k_a", now))
	cut := bytes.SplitAfterN(line(t, piRecord("pi_b", 2), idemRecord("k_b", now)), []byte("\n"), 2)[0]
	if err := os.WriteFile(path, slices.Concat(whole, cut), 0o600); err != nil {
		t.Fatal(err)
	}
	log = newLogCapture()
	s2, err := New(Options{StatePath: path, Clock: clock, Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := piIDs(s2); !slices.Equal(got, []string{"pi_a"}) || fileSize(t, path) != int64(len(whole)) {
		t.Errorf("after a cut group at the end: %v, %d bytes (want %d)", got, fileSize(t, path), len(whole))
	}
	if sum := log.find(slog.LevelWarn, "sandbox journal was damaged"); len(sum) != 1 || attr(sum[0], "rewritten").Bool() {
		t.Errorf("want a warning without a rewrite:\n%s", log)
	}
}

func TestJournalGarbage(t *testing.T) {
	clock := newTestClock()
	raw := slices.Concat(
		line(t, piRecord("pi_a", 1)),
		[]byte("not json\n"),
		[]byte("\n"),
		[]byte("\x00\xff\xfe garbage {\"k\": \n"),
		[]byte(`{"k":"pi"}`+"\n"),
		[]byte(`{"k":"nope","pi":{"id":"pi_x"}}`+"\n"),
		[]byte(`{"k":"pi","pi":{"id":"pi_x","charge":{"id":"ch_x","card":"visa"},"refunds":[null]}}`+"\n"),
		[]byte(`{"k":"pi","pi":{"id":"pi_x","refunds":[{"id":"re_x"}]}}`+"\n"),
		[]byte(`{"k":"pm","pm":{"id":"pm_x","card":"no such card"}}`+"\n"),
		[]byte(`{"k":"idem","idem":{"key":"k","status":0}}`+"\n"),
		[]byte(`{"k":"pi","i":3,"n":2,"pi":{"id":"pi_x"}}`+"\n"),
		line(t, piRecord("pi_b", 2)),
		bytes.Repeat([]byte("x"), maxRecord+10), []byte("\n"),
		line(t, piRecord("pi_c", 3)),
		[]byte(`{"k":"pi","pi":{"id":"pi_torn`),
	)
	s, log := openDamaged(t, raw, clock)
	if got := piIDs(s); !slices.Equal(got, []string{"pi_a", "pi_b", "pi_c"}) {
		t.Errorf("after repair: %v", got)
	}
	sum := log.find(slog.LevelWarn, "sandbox journal was damaged")
	if len(sum) != 1 || attr(sum[0], "damaged_stretches").Int64() != 12 || attr(sum[0], "all_listed").Bool() {
		t.Errorf("want 12 damaged stretches, not all listed:\n%s", log)
	}
	if n := log.count(slog.LevelWarn, "dropping damaged bytes"); n != maxDamageWarnings {
		t.Errorf("%d warnings listed, want %d", n, maxDamageWarnings)
	}
}

func TestJournalPermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sandbox.jsonl")
	clock := newTestClock()
	ownerOnly := func(what string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: journal mode %v, want -rw-------", what, fi.Mode().Perm())
		}
	}
	e := newEnv(t, Options{StatePath: path, Clock: clock})
	if _, err := e.charge(t, "don_1", "pm_card_visa", "k1"); err != nil {
		t.Fatal(err)
	}
	ownerOnly("created")

	// A leftover temporary file, open to all, does not lend its mode to
	// the compacted journal.
	if err := os.WriteFile(path+".tmp", []byte("left over"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path+".tmp", 0o644); err != nil {
		t.Fatal(err)
	}
	e.s.mu.Lock()
	err := e.s.journal.compact(e.s.snapshot())
	e.s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ownerOnly("compacted")
	e.s.Close()

	// A journal made open to all elsewhere is restricted, with a warning.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	log := newLogCapture()
	s, err := New(Options{StatePath: path, Clock: clock, Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ownerOnly("reopened")
	if log.count(slog.LevelWarn, "readable by others") != 1 {
		t.Errorf("no warning about the journal's mode:\n%s", log)
	}
}

// TestPaymentIntentClone checks that clone shares no memory with the
// original, so that undoing a change restores every nested field.
func TestPaymentIntentClone(t *testing.T) {
	pi := &paymentIntent{ID: "pi_1", Metadata: map[string]string{"a": "b"}, Types: []string{"card"},
		LastError: &lastError{Code: "card_declined"}, Charge: &charge{ID: "ch_1", Card: "visa"},
		Refunds: []*refund{{ID: "re_1", Metadata: map[string]string{"c": "d"}}}, Dispute: &dispute{ID: "dp_1"}}
	c := pi.clone()
	if !reflect.DeepEqual(c, pi) {
		t.Fatalf("clone differs:\n%+v\n%+v", c, pi)
	}
	if path := shared(reflect.ValueOf(pi).Elem(), reflect.ValueOf(c).Elem(), "pi"); path != "" {
		t.Errorf("clone shares %s with the original", path)
	}
	pm := &paymentMethod{ID: "pm_1", Metadata: map[string]string{"a": "b"}}
	if path := shared(reflect.ValueOf(pm).Elem(), reflect.ValueOf(pm.clone()).Elem(), "pm"); path != "" {
		t.Errorf("clone shares %s with the original", path)
	}
}

// shared names the first pointer, map or slice that a and b share, or "".
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return path
		}
	case reflect.Slice:
		if a.Len() == 0 {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for i := range a.Len() {
			if p := shared(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	}
	return ""
}

// FuzzJournalReplay starts the sandbox on arbitrary bytes: the start never
// fails or panics, everything kept can be served, and the journal it
// leaves reads back, without a warning, as the same state.
func FuzzJournalReplay(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seeds := [][]byte{
		nil,
		line(f, piRecord("pi_a", 1), idemRecord("k_a", now)),
		slices.Concat(line(f, piRecord("pi_a", 1))[:30], line(f, piRecord("pi_b", 2))),
		[]byte(`{"k":"pi","pi":{"id":"pi_x","charge":{"id":"ch_x","card":"visa","status":"succeeded"},"refunds":[{"id":"re_1","amount":5}],"dispute":{"id":"dp_1"},"status":"requires_action","payment_method":"pm_y","last_error":{"payment_method":"pm_card_visa"}}}` + "\n"),
		[]byte(`{"k":"pm","pm":{"id":"pm_y","card":"visa","used_by":"pi_x"}}` + "\n" + `{"k":"idem","idem":{"key":"k","status":402,"body":"e30K","created":"2026-01-02T03:00:00Z"}}` + "\n"),
		[]byte("garbage\n{\"k\":\n\n"),
		[]byte(`{"k":"pi","i":1,"n":2,"pi":{"id":"pi_g"}}` + "\n" + `{"k":"pi","i":2,"n":2,"pi":{"id":"pi_g","seq":4}}`),
		[]byte(`{"k":"evt","evt":{"seq":2,"id":"evt_b","type":"payment_intent.succeeded","created":5,"object":{"id":"pi_a","metadata":{"k":"v"}},"webhook":true}}` + "\n" +
			`{"k":"evt","evt":{"seq":1,"id":"evt_a","type":"payment_intent.created","created":5,"request_id":"req_1","idempotency_key":"k","object":{}}}` + "\n" +
			`{"k":"dlv","dlv":"evt_b"}` + "\n" + `{"k":"dlv","dlv":"evt_gone"}` + "\n" +
			`{"k":"evt","evt":{"seq":3,"id":"evt_a","type":"x","created":-1,"object":{"a":[1,"<&>"]}}}` + "\n"),
		[]byte(`{"k":"evt","i":1,"n":2,"evt":{"id":"evt_c","type":"t","object":{}}}` + "\n" + `{"k":"evt","evt":{"id":"evt_d","type":"t","object":[]}}` + "\n"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		clock := clocktest.New(now)
		path := filepath.Join(fuzzDir(t), "sandbox.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{StatePath: path, Clock: clock})
		if err != nil {
			t.Fatalf("start refused: %v", err)
		}
		serveAll(s)
		first := fuzzState(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		log := newLogCapture()
		s2, err := New(Options{StatePath: path, Clock: clock, Logger: log.logger()})
		if err != nil {
			t.Fatalf("second start refused: %v", err)
		}
		defer s2.Close()
		if n := log.atLeast(slog.LevelWarn); n != 0 {
			t.Errorf("the journal left by the first start gives %d warnings:\n%s", n, log)
		}
		if second := fuzzState(t, s2); second != first {
			t.Errorf("state after the second start:\n%s\nafter the first:\n%s", second, first)
		}
	})
}

// fuzzDir is a fresh directory for one fuzz input: on a memory file system
// when there is one, where an fsync costs nothing, so that the fuzzer's
// time goes to replaying rather than to waiting on the disk.
func fuzzDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "floodgate-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// serveAll renders everything s holds, as its API and pages would.
func serveAll(s *Server) {
	_ = s.Ledger()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pi := range s.pis {
		s.renderPI(pi, "http://sandbox.test", expansion{paymentMethod: true, latestCharge: true})
		if pi.Charge != nil {
			s.renderCharge(pi)
			for _, rf := range pi.Refunds {
				s.renderRefund(pi, rf)
			}
			if pi.Dispute != nil {
				s.renderDispute(pi)
			}
		}
		if pi.ReturnURL != "" {
			redirectURL(pi)
		}
	}
	for _, pm := range s.pms {
		s.renderPM(pm)
	}
	for _, e := range s.idem.m {
		e.response().write(httptest.NewRecorder())
	}
	for _, ev := range s.events.live() {
		if _, err := json.Marshal(ev.render(ev.pendingWebhooks())); err != nil {
			panic(fmt.Sprintf("event %s cannot be served: %v", ev.ID, err))
		}
	}
}

// fuzzState is what s holds, in an order that does not depend on how
// ties in creation order were broken.
func fuzzState(tb testing.TB, s *Server) string {
	tb.Helper()
	s.mu.Lock()
	recs := s.snapshot()
	s.mu.Unlock()
	var lines []string
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
