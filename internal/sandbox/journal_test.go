package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

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

	// A corrupt record in the middle is not silently skipped.
	if err := os.WriteFile(path, []byte("{\"k\":\"pi\"\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := New(Options{StatePath: path}); err == nil {
		s.Close()
		t.Error("a corrupt journal was accepted")
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
	if records != 20 || compacted != 15 {
		t.Errorf("records %d -> %d, want 20 -> 15 (5 PaymentIntents, 10 keys)", records, compacted)
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
