package sandbox

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// piParams is one PaymentIntent creation with exactly the parameters the
// adapter sends, so that both may share an idempotency key.
func piParams(donation, pm, key string, amount int64) *stripe.PaymentIntentCreateParams {
	p := &stripe.PaymentIntentCreateParams{
		Amount: stripe.Int64(amount), Currency: stripe.String("eur"), PaymentMethod: stripe.String(pm),
		Confirm: stripe.Bool(true), PaymentMethodTypes: stripe.StringSlice([]string{"card"}),
		Metadata: map[string]string{"donation_id": donation},
	}
	p.IdempotencyKey = stripe.String(key)
	p.AddExpand("payment_method")
	return p
}

func TestIdempotentReplay(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	a, err := e.api.V1PaymentIntents.Create(ctx, piParams("don_1", "pm_card_visa", "don_1:1", 2500))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.api.V1PaymentIntents.Create(ctx, piParams("don_1", "pm_card_visa", "don_1:1", 2500))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || string(a.LastResponse.RawJSON) != string(b.LastResponse.RawJSON) {
		t.Fatalf("replay differs: %s vs %s", a.ID, b.ID)
	}
	if a.LastResponse.Header.Get("Idempotent-Replayed") != "" || b.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: first %q, replay %q", a.LastResponse.Header.Get("Idempotent-Replayed"), b.LastResponse.Header.Get("Idempotent-Replayed"))
	}
	if b.LastResponse.RequestID == a.LastResponse.RequestID || b.LastResponse.Header.Get("Original-Request") != a.LastResponse.RequestID {
		t.Errorf("request ids: first %s, replay %s (original %s)", a.LastResponse.RequestID, b.LastResponse.RequestID, b.LastResponse.Header.Get("Original-Request"))
	}
	if b.LastResponse.IdempotencyKey != "don_1:1" {
		t.Errorf("echoed key %q", b.LastResponse.IdempotencyKey)
	}

	// A decline is stored too: the replay is the same 402 with the same
	// PaymentIntent.
	_, err1 := e.api.V1PaymentIntents.Create(ctx, piParams("don_2", "pm_card_chargeDeclined", "don_2:1", 2500))
	_, err2 := e.api.V1PaymentIntents.Create(ctx, piParams("don_2", "pm_card_chargeDeclined", "don_2:1", 2500))
	var s1, s2 *stripe.Error
	if !errors.As(err1, &s1) || !errors.As(err2, &s2) || s1.PaymentIntent.ID != s2.PaymentIntent.ID || s2.HTTPStatusCode != 402 ||
		s2.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("declines: %v / %v", err1, err2)
	}

	// Keys belong to an API key: another key's same string is another key.
	other := rawClient(e.url, "sk_test_another_account")
	c, err := other.V1PaymentIntents.Create(ctx, piParams("don_1", "pm_card_visa", "don_1:1", 2500))
	if err != nil || c.ID == a.ID {
		t.Errorf("another API key: %v, %v", c, err)
	}
	l := e.s.Ledger()
	if l.Counts.PaymentIntents != 3 || l.Counts.Replays != 2 {
		t.Errorf("ledger counts %+v", l.Counts)
	}
}

func TestIdempotencyMismatch(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	p, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.pay.Charge(ctx, floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_1"), Amount: 9900, Currency: "eur", PaymentMethod: "pm_card_visa", IdempotencyKey: "don_1:1"})
	pe := providerError(t, err, floodgate.ProviderIdempotency)
	if pe.HTTPStatus != 400 || pe.Type != "idempotency_error" || !strings.Contains(pe.Message, "same parameters") || !pe.Unknown() {
		t.Errorf("mismatch: %+v", pe)
	}
	// The same key on another endpoint is a mismatch as well, which
	// Stripe words differently, naming both paths.
	_, err = e.pay.Charge(ctx, floodgate.ChargeRequest{PaymentIntentID: p.ID, PaymentMethod: "pm_card_visa", IdempotencyKey: "don_1:1"})
	pe = providerError(t, err, floodgate.ProviderIdempotency)
	want := "Keys for idempotent requests can only be used for the same endpoint they were first used for ('/v1/payment_intents/" + p.ID + "/confirm' vs '/v1/payment_intents')."
	if pe.HTTPStatus != 400 || pe.Type != "idempotency_error" || !strings.HasPrefix(pe.Message, want) {
		t.Errorf("another endpoint: %+v", pe)
	}
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 1 || l.Counts.IdempotencyErrors != 2 {
		t.Errorf("ledger counts %+v", l.Counts)
	}
}

func TestIdempotencyKeyInFlight(t *testing.T) {
	e := newEnv(t, Options{})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	e.s.beforeExec.Store(&hold)

	type result struct {
		p   *floodgate.Payment
		err error
	}
	first := make(chan result, 1)
	go func() {
		p, err := e.pay.Charge(context.Background(), floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_1"), Amount: 2500, Currency: "eur",
			PaymentMethod: "pm_card_visa", IdempotencyKey: "don_1:1"})
		first <- result{p, err}
	}()
	select {
	case <-entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the first request never began executing")
	}
	_, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	pe := providerError(t, err, floodgate.ProviderIdempotency)
	if pe.HTTPStatus != http.StatusConflict || pe.Code != "idempotency_key_in_use" || pe.ShouldRetry == nil || !*pe.ShouldRetry {
		t.Errorf("concurrent use: %+v", pe)
	}
	close(release)
	r := <-first
	if r.err != nil || r.p.Status != floodgate.PaymentSucceeded {
		t.Fatalf("first request: %+v, %v", r.p, r.err)
	}
	again, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil || again.ID != r.p.ID {
		t.Errorf("after it finished: %+v, %v", again, err)
	}
}

func TestStoredServerErrorThenRetention(t *testing.T) {
	e := newEnv(t, Options{FailRate: 1, IdempotencyRetention: 2 * time.Second})
	ctx := context.Background()
	params := func() *stripe.PaymentIntentCreateParams { return piParams("don_1", "pm_card_visa", "don_1:1", 2500) }

	_, err := e.api.V1PaymentIntents.Create(ctx, params())
	var first *stripe.Error
	if !errors.As(err, &first) || first.HTTPStatusCode != 500 || first.Type != "api_error" {
		t.Fatalf("injected failure: %v", err)
	}
	if err := e.s.SetConfig(Config{}); err != nil {
		t.Fatal(err)
	}
	// Within the retention, the key replays the stored 500 although the
	// fault is gone: retrying the same key cannot help.
	_, err = e.api.V1PaymentIntents.Create(ctx, params())
	var replay *stripe.Error
	if !errors.As(err, &replay) || replay.HTTPStatusCode != 500 || replay.LastResponse.Header.Get("Idempotent-Replayed") != "true" ||
		replay.LastResponse.Header.Get("Stripe-Should-Retry") != "false" {
		t.Fatalf("replayed failure: %v", err)
	}
	_, err = e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if pe := providerError(t, err, floodgate.ProviderServer); pe.HTTPStatus != 500 || pe.ShouldRetry == nil || *pe.ShouldRetry {
		t.Errorf("adapter: %+v", pe)
	}
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 0 || l.Counts.InjectedFailures != 1 {
		t.Fatalf("nothing may be charged before the failure: %+v", l.Counts)
	}
	// Past the retention the key is forgotten and executes anew.
	e.clock.Advance(2 * time.Second)
	pi, err := e.api.V1PaymentIntents.Create(ctx, params())
	if err != nil || pi.Status != "succeeded" || pi.LastResponse.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("after retention: %+v, %v", pi, err)
	}
}

func TestRetentionChargesAgain(t *testing.T) {
	// The danger floodgate must avoid: the same key after the retention
	// creates a second charge.
	e := newEnv(t, Options{IdempotencyRetention: 2 * time.Second})
	p1, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if p, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1"); err != nil || p.ID != p1.ID {
		t.Fatalf("within retention: %+v, %v", p, err)
	}
	e.clock.Advance(time.Second)
	p2, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil || p2.ID == p1.ID {
		t.Fatalf("after retention: %+v, %v", p2, err)
	}
	l := e.s.Ledger()
	if len(l.ChargedTwice) != 1 || l.ChargedTwice[0] != "don_1" || len(l.ByDonation["don_1"]) != 2 || l.Counts.ChargedTwice != 1 {
		t.Errorf("ledger: %+v", l)
	}
}

func TestLostAnswer(t *testing.T) {
	e := newEnv(t, Options{LoseRate: 1})
	ctx := context.Background()
	// Warm a keep-alive connection first, so that the lost answer happens
	// on a reused connection, where net/http would replay by itself if the
	// adapter let it.
	if _, err := e.pay.Payment(ctx, "pi_warmup"); err == nil {
		t.Fatal("warm-up found a PaymentIntent")
	}
	_, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	pe := providerError(t, err, floodgate.ProviderNetwork)
	if pe.HTTPStatus != 0 || !pe.Unknown() {
		t.Errorf("lost answer: %+v", pe)
	}
	l := e.s.Ledger()
	if l.Counts.PaymentIntents != 1 || l.Counts.Succeeded != 1 || l.Counts.LostAnswers != 1 || l.Counts.Replays != 0 {
		t.Fatalf("the charge must have happened, once, unseen: %+v", l.Counts)
	}
	if err := e.s.SetConfig(Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil || p.ID != l.PaymentIntents[0].ID || p.Status != floodgate.PaymentSucceeded {
		t.Fatalf("retry with the key: %+v, %v", p, err)
	}
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 1 || l.Counts.Replays != 1 {
		t.Errorf("after the retry: %+v", l.Counts)
	}
}

func TestIdemStoreBound(t *testing.T) {
	st := newIdemStore(time.Hour, 3)
	now := time.Unix(1_700_000_000, 0)
	for i, k := range []string{"a", "b", "c", "d"} {
		e := st.reserve("s", k, "f", "req", now.Add(time.Duration(i)*time.Second))
		if e == nil {
			t.Fatalf("reserve %s refused", k)
		}
		st.complete(e, &response{status: 200, body: []byte("{}")})
	}
	if st.evicted != 1 || len(st.m) != 3 || st.get("s", "a", now) != nil || st.get("s", "d", now) == nil {
		t.Errorf("evicted %d, keys %d", st.evicted, len(st.m))
	}
	// Keys in flight are never evicted: a store full of them refuses.
	full := newIdemStore(time.Hour, 1)
	if full.reserve("s", "x", "f", "req", now) == nil || full.reserve("s", "y", "f", "req", now) != nil {
		t.Error("a store full of requests in flight accepted another")
	}
	// Expiry is exact: a key lives for the retention, not a moment more.
	exp := newIdemStore(2*time.Second, 10)
	e := exp.reserve("s", "k", "f", "req", now)
	exp.complete(e, &response{status: 200})
	if exp.get("s", "k", now.Add(2*time.Second-time.Nanosecond)) == nil || exp.get("s", "k", now.Add(2*time.Second)) != nil {
		t.Error("retention is not exact")
	}
}
