package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

func TestChargeOutcomes(t *testing.T) {
	e := newEnv(t, Options{})
	tests := []struct {
		pm          string
		status      floodgate.PaymentStatus
		code        string // ProviderCard error's code, "" when no error
		declineCode string
	}{
		{"pm_card_visa", floodgate.PaymentSucceeded, "", ""},
		{"pm_card_visa_debit", floodgate.PaymentSucceeded, "", ""},
		{"pm_card_mastercard", floodgate.PaymentSucceeded, "", ""},
		{"pm_card_amex", floodgate.PaymentSucceeded, "", ""},
		{"pm_card_createDispute", floodgate.PaymentSucceeded, "", ""},
		{"pm_card_chargeDeclined", floodgate.PaymentRequiresPaymentMethod, "card_declined", "generic_decline"},
		{"pm_card_chargeDeclinedInsufficientFunds", floodgate.PaymentRequiresPaymentMethod, "card_declined", "insufficient_funds"},
		{"pm_card_chargeDeclinedLostCard", floodgate.PaymentRequiresPaymentMethod, "card_declined", "lost_card"},
		{"pm_card_chargeDeclinedStolenCard", floodgate.PaymentRequiresPaymentMethod, "card_declined", "stolen_card"},
		{"pm_card_chargeDeclinedFraudulent", floodgate.PaymentRequiresPaymentMethod, "card_declined", "fraudulent"},
		{"pm_card_chargeDeclinedExpiredCard", floodgate.PaymentRequiresPaymentMethod, "expired_card", "expired_card"},
		{"pm_card_chargeDeclinedIncorrectCvc", floodgate.PaymentRequiresPaymentMethod, "incorrect_cvc", "incorrect_cvc"},
		{"pm_card_chargeDeclinedProcessingError", floodgate.PaymentRequiresPaymentMethod, "processing_error", "processing_error"},
		{"pm_card_authenticationRequired", floodgate.PaymentRequiresAction, "", ""},
		{"pm_card_threeDSecure2Required", floodgate.PaymentRequiresAction, "", ""},
		{"pm_card_authenticationRequiredChargeDeclinedInsufficientFunds", floodgate.PaymentRequiresAction, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.pm, func(t *testing.T) {
			donation := "don_" + tt.pm
			p, err := e.charge(t, donation, tt.pm, "key_"+tt.pm)
			if tt.code != "" {
				pe := providerError(t, err, floodgate.ProviderCard)
				if pe.HTTPStatus != http.StatusPaymentRequired || pe.Type != "card_error" || pe.Code != tt.code || pe.DeclineCode != tt.declineCode {
					t.Fatalf("error = %+v", pe)
				}
				if pe.RequestID == "" || pe.Message == "" {
					t.Errorf("request id %q, message %q: want both", pe.RequestID, pe.Message)
				}
				p = pe.Payment
				if p == nil {
					t.Fatal("a decline must carry the PaymentIntent")
				}
				if p.FailureCode != tt.code || p.DeclineCode != tt.declineCode {
					t.Errorf("payment failure = %s/%s", p.FailureCode, p.DeclineCode)
				}
			} else if err != nil {
				t.Fatalf("Charge: %v", err)
			}
			if p.Status != tt.status {
				t.Fatalf("status = %s, want %s", p.Status, tt.status)
			}
			card := cardsByPM[tt.pm]
			if p.Fingerprint != card.fingerprint() {
				t.Errorf("fingerprint = %q, want %q", p.Fingerprint, card.fingerprint())
			}
			if p.DonationID() != donation || p.Amount != 2500 || p.Currency != "eur" || !strings.HasPrefix(p.ClientSecret, p.ID+"_secret_") {
				t.Errorf("payment = %+v", p)
			}
			if tt.status == floodgate.PaymentRequiresAction {
				link := stripeJS(t, p)
				want := e.url + "/_sandbox/3ds/" + p.ID + "?client_secret=" + url.QueryEscape(p.ClientSecret)
				if link != want {
					t.Errorf("stripe_js = %q, want %q", link, want)
				}
			} else if p.NextAction != nil {
				t.Errorf("next_action = %s, want none", p.NextAction)
			}
		})
	}
	l := e.s.Ledger()
	if len(l.PaymentIntents) != len(tests) || len(l.ChargedTwice) != 0 {
		t.Errorf("ledger has %d PaymentIntents, charged twice %v", len(l.PaymentIntents), l.ChargedTwice)
	}
}

func TestFingerprintsAreStable(t *testing.T) {
	// The same card gives the same fingerprint in two unrelated sandboxes,
	// through magic ids and tokens alike; other cards differ.
	a, b := newEnv(t, Options{}), newEnv(t, Options{})
	ctx := context.Background()
	fp := func(e *env, tok string) (string, string) {
		t.Helper()
		pm, err := e.api.V1PaymentMethods.Create(ctx, &stripe.PaymentMethodCreateParams{
			Type: stripe.String("card"), Card: &stripe.PaymentMethodCreateCardParams{Token: stripe.String(tok)}})
		if err != nil {
			t.Fatalf("create %s: %v", tok, err)
		}
		return pm.ID, pm.Card.Fingerprint
	}
	id1, visa1 := fp(a, "tok_visa")
	id2, visa2 := fp(a, "tok_visa")
	_, visa3 := fp(b, "tok_visa")
	_, mc := fp(a, "tok_mastercard")
	if id1 == id2 || !strings.HasPrefix(id1, "pm_") {
		t.Errorf("payment method ids %q, %q: want fresh ids", id1, id2)
	}
	if visa1 == "" || visa1 != visa2 || visa1 != visa3 {
		t.Errorf("visa fingerprints %q %q %q differ", visa1, visa2, visa3)
	}
	if mc == visa1 {
		t.Errorf("mastercard and visa share fingerprint %q", mc)
	}
	magic, err := a.api.V1PaymentMethods.Retrieve(ctx, "pm_card_visa", nil)
	if err != nil {
		t.Fatal(err)
	}
	if magic.Card.Fingerprint != visa1 || magic.Card.Last4 != "4242" || magic.Card.Brand != "visa" {
		t.Errorf("pm_card_visa card = %+v", magic.Card)
	}
	got, err := a.api.V1PaymentMethods.Retrieve(ctx, id1, nil)
	if err != nil || got.ID != id1 || got.Card.Fingerprint != visa1 {
		t.Errorf("retrieve %s = %+v, %v", id1, got, err)
	}
	pm, err := a.api.V1PaymentMethods.Create(ctx, &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Number: stripe.String("4242424242424242"), ExpMonth: stripe.Int64(4), ExpYear: stripe.Int64(2040), CVC: stripe.String("123")}})
	if err != nil || pm.Card.Fingerprint != visa1 || pm.Card.ExpYear != 2040 {
		t.Errorf("card number 4242: %+v, %v", pm, err)
	}
	if _, err := a.api.V1PaymentMethods.Retrieve(ctx, "pm_nope", nil); err == nil {
		t.Error("retrieving an unknown payment method succeeded")
	}
}

func TestFreshPaymentMethodIsSingleUse(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	pm, err := e.api.V1PaymentMethods.Create(ctx, &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Token: stripe.String("tok_visa")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.charge(t, "don_a", pm.ID, "key_a"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	// The adapter reports the refusal as an unknown outcome: for floodgate
	// the earlier user is most likely the same donation.
	_, err = e.charge(t, "don_b", pm.ID, "key_b")
	pe := providerError(t, err, floodgate.ProviderIdempotency)
	if pe.HTTPStatus != 400 || pe.Type != "invalid_request_error" || pe.Code != "" || !pe.Unknown() ||
		!strings.Contains(pe.Message, "previously used with a PaymentIntent without Customer attachment") {
		t.Errorf("reuse error = %+v", pe)
	}
	// Magic test methods are reusable, as on Stripe.
	for i := range 3 {
		if _, err := e.charge(t, fmt.Sprintf("don_m%d", i), "pm_card_visa", fmt.Sprintf("key_m%d", i)); err != nil {
			t.Fatalf("magic reuse %d: %v", i, err)
		}
	}
	// A declined fresh method may be confirmed again on its own
	// PaymentIntent, but not used for another.
	bad, err := e.api.V1PaymentMethods.Create(ctx, &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
		Card: &stripe.PaymentMethodCreateCardParams{Token: stripe.String("tok_chargeDeclined")}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.charge(t, "don_c", bad.ID, "key_c")
	declined := providerError(t, err, floodgate.ProviderCard).Payment
	_, err = e.pay.Charge(ctx, floodgate.ChargeRequest{PaymentIntentID: declined.ID, PaymentMethod: bad.ID, IdempotencyKey: "key_c2"})
	providerError(t, err, floodgate.ProviderCard)
	_, err = e.charge(t, "don_d", bad.ID, "key_d")
	providerError(t, err, floodgate.ProviderIdempotency)
}

func TestConfirmAfterDecline(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	_, err := e.charge(t, "don_1", "pm_card_chargeDeclined", "don_1:1")
	first := providerError(t, err, floodgate.ProviderCard).Payment
	p, err := e.pay.Charge(ctx, floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_1"), PaymentIntentID: first.ID,
		PaymentMethod: "pm_card_mastercard", IdempotencyKey: "don_1:2"})
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if p.ID != first.ID || p.Status != floodgate.PaymentSucceeded || p.FailureCode != "" {
		t.Fatalf("after retry: %+v", p)
	}
	if p.Fingerprint != cardsByName["mastercard"].fingerprint() {
		t.Errorf("fingerprint %q is not the new card's", p.Fingerprint)
	}
	// A succeeded PaymentIntent cannot be confirmed again.
	_, err = e.pay.Charge(ctx, floodgate.ChargeRequest{PaymentIntentID: first.ID, PaymentMethod: "pm_card_visa", IdempotencyKey: "don_1:3"})
	pe := providerError(t, err, floodgate.ProviderInvalid)
	if pe.Code != "payment_intent_unexpected_state" || pe.Payment == nil || pe.Payment.Status != floodgate.PaymentSucceeded {
		t.Errorf("confirm of a succeeded PaymentIntent: %+v", pe)
	}
	l := e.s.Ledger()
	if got := l.PaymentIntents[0]; got.Attempts != 2 || got.Status != "succeeded" || got.DonationID != "don_1" {
		t.Errorf("ledger entry = %+v", got)
	}
}

func TestThreeDSecure(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	start := func(t *testing.T, pm string) *floodgate.Payment {
		t.Helper()
		p, err := e.charge(t, "don_"+t.Name(), pm, "key_"+t.Name())
		if err != nil || p.Status != floodgate.PaymentRequiresAction {
			t.Fatalf("charge: %+v, %v", p, err)
		}
		return p
	}
	verdict := func(t *testing.T, p *floodgate.Payment, v, secret string) (int, map[string]any) {
		t.Helper()
		status, _, body := e.do(t, http.MethodPost, "/_sandbox/3ds/"+p.ID+"/"+v, "", "", url.Values{"client_secret": {secret}})
		return status, body
	}

	t.Run("page", func(t *testing.T) {
		p := start(t, "pm_card_authenticationRequired")
		resp, err := http.Get(stripeJS(t, p))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		page := string(raw)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{">Complete<", ">Fail<", p.ID + "/complete", p.ID + "/fail", "EUR 25.00"} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if strings.Contains(page, "src=\"http") || strings.Contains(page, "href=\"http") {
			t.Error("page loads an external asset")
		}
		wrong, err := http.Get(e.url + "/_sandbox/3ds/" + p.ID + "?client_secret=nope")
		if err != nil {
			t.Fatal(err)
		}
		wrong.Body.Close()
		if wrong.StatusCode != 400 {
			t.Errorf("page with a wrong secret: %d", wrong.StatusCode)
		}
	})

	t.Run("complete", func(t *testing.T) {
		p := start(t, "pm_card_threeDSecure2Required")
		if status, body := verdict(t, p, "complete", p.ClientSecret); status != 200 || body["status"] != "succeeded" {
			t.Fatalf("complete: %d %v", status, body)
		}
		got, err := e.pay.Payment(ctx, p.ID)
		if err != nil || got.Status != floodgate.PaymentSucceeded || got.NextAction != nil {
			t.Fatalf("after complete: %+v, %v", got, err)
		}
		if status, body := verdict(t, p, "complete", p.ClientSecret); status != 400 || errorBody(t, body)["code"] != "payment_intent_unexpected_state" {
			t.Errorf("second complete: %d %v", status, body)
		}
	})

	t.Run("fail", func(t *testing.T) {
		p := start(t, "pm_card_authenticationRequired")
		if status, _ := verdict(t, p, "fail", "wrong"); status != 400 {
			t.Errorf("fail with a wrong secret: %d", status)
		}
		if status, _ := verdict(t, p, "fail", ""); status != 400 {
			t.Errorf("fail without a secret: %d", status)
		}
		if status, body := verdict(t, p, "fail", p.ClientSecret); status != 200 || body["status"] != "requires_payment_method" {
			t.Fatalf("fail: %d %v", status, body)
		}
		got, err := e.pay.Payment(ctx, p.ID)
		if err != nil || got.Status != floodgate.PaymentRequiresPaymentMethod || got.FailureCode != "payment_intent_authentication_failure" {
			t.Fatalf("after fail: %+v, %v", got, err)
		}
	})

	t.Run("decline_after_authentication", func(t *testing.T) {
		p := start(t, "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds")
		if status, body := verdict(t, p, "complete", p.ClientSecret); status != 200 || body["status"] != "requires_payment_method" {
			t.Fatalf("complete: %d %v", status, body)
		}
		got, err := e.pay.Payment(ctx, p.ID)
		if err != nil || got.DeclineCode != "insufficient_funds" {
			t.Fatalf("after complete: %+v, %v", got, err)
		}
	})

	t.Run("browser_redirect", func(t *testing.T) {
		pi, err := e.api.V1PaymentIntents.Create(ctx, &stripe.PaymentIntentCreateParams{
			Amount: stripe.Int64(1000), Currency: stripe.String("eur"), PaymentMethod: stripe.String("pm_card_authenticationRequired"),
			Confirm: stripe.Bool(true), ReturnURL: stripe.String("https://donate.example/done?c=1"),
		})
		if err != nil || pi.Status != "requires_action" {
			t.Fatalf("create: %+v, %v", pi, err)
		}
		req, _ := http.NewRequest(http.MethodPost, e.url+"/_sandbox/3ds/"+pi.ID+"/complete",
			strings.NewReader(url.Values{"client_secret": {pi.ClientSecret}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc.Host != "donate.example" || loc.Query().Get("redirect_status") != "succeeded" ||
			loc.Query().Get("payment_intent") != pi.ID || loc.Query().Get("c") != "1" {
			t.Errorf("redirect: %d %s", resp.StatusCode, loc)
		}
	})
}

func TestCancel(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	p, err := e.charge(t, "don_1", "pm_card_authenticationRequired", "k1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.pay.CancelPayment(ctx, p.ID, "cancel:"+p.ID)
	if err != nil || got.Status != floodgate.PaymentCanceled {
		t.Fatalf("cancel: %+v, %v", got, err)
	}
	again, err := e.pay.CancelPayment(ctx, p.ID, "cancel:"+p.ID)
	if err != nil || again.Status != floodgate.PaymentCanceled {
		t.Fatalf("cancel replayed: %+v, %v", again, err)
	}
	ok, err := e.charge(t, "don_2", "pm_card_visa", "k2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.pay.CancelPayment(ctx, ok.ID, "cancel:"+ok.ID)
	pe := providerError(t, err, floodgate.ProviderInvalid)
	if pe.Code != "payment_intent_unexpected_state" || pe.Payment == nil || pe.Payment.ID != ok.ID || pe.Payment.Status != floodgate.PaymentSucceeded {
		t.Errorf("cancel of a succeeded PaymentIntent: %+v", pe)
	}
	_, err = e.pay.CancelPayment(ctx, "pi_unknown", "")
	providerError(t, err, floodgate.ProviderNotFound)
}

func TestListPagination(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	start := e.clock.Now()
	const n = 250
	ids := make([]string, n)
	for i := range n {
		if i%3 == 0 {
			e.clock.Advance(time.Second) // several PaymentIntents share a second
		}
		p, err := e.charge(t, fmt.Sprintf("don_%d", i%100), "pm_card_visa", fmt.Sprintf("key_%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = p.ID
	}
	// Everything, newest first, across three pages of 100.
	all, err := floodgate.AllPayments(ctx, e.pay, floodgate.PaymentQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("found %d, want %d", len(all), n)
	}
	for i, p := range all {
		if p.ID != ids[n-1-i] {
			t.Fatalf("item %d = %s, want %s (newest first)", i, p.ID, ids[n-1-i])
		}
	}
	// A creation window, both ends included.
	from, to := start.Add(10*time.Second), start.Add(20*time.Second)
	window, err := floodgate.AllPayments(ctx, e.pay, floodgate.PaymentQuery{CreatedFrom: from, CreatedTo: to})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, p := range all {
		if !p.Created.Before(from) && !p.Created.After(to) {
			want++
		}
	}
	if len(window) != want || want != 33 {
		t.Errorf("window has %d, want %d (33)", len(window), want)
	}
	// One donation, matched on metadata.
	mine, err := floodgate.AllPayments(ctx, e.pay, floodgate.PaymentQuery{Metadata: floodgate.DonationLookup("don_7")})
	if err != nil || len(mine) != 3 {
		t.Errorf("don_7: %d payments, %v", len(mine), err)
	}

	// stripe-go's own iterators, forward and backward, over small pages.
	var fwd []string
	lp := &stripe.PaymentIntentListParams{}
	lp.Limit = stripe.Int64(7)
	for pi, err := range e.api.V1PaymentIntents.List(ctx, lp).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		fwd = append(fwd, pi.ID)
	}
	if len(fwd) != n || fwd[0] != ids[n-1] || fwd[n-1] != ids[0] {
		t.Errorf("forward iteration: %d items", len(fwd))
	}
	bp := &stripe.PaymentIntentListParams{}
	bp.Limit = stripe.Int64(9)
	bp.EndingBefore = stripe.String(ids[100])
	var back []string
	for pi, err := range e.api.V1PaymentIntents.List(ctx, bp).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, pi.ID)
	}
	if len(back) != n-101 || back[0] != ids[101] || back[len(back)-1] != ids[n-1] {
		t.Errorf("backward iteration: %d items, first %v", len(back), back[:min(3, len(back))])
	}

	for _, tt := range []struct {
		query string
		code  string
	}{
		{"limit=0", ""},
		{"limit=101", ""},
		{"limit=x", "parameter_invalid_integer"},
		{"starting_after=pi_nope", "resource_missing"},
		{"created[between]=1", "parameter_unknown"},
		{"sort=asc", "parameter_unknown"},
	} {
		status, _, body := e.do(t, http.MethodGet, "/v1/payment_intents?"+tt.query, testKey, "", nil)
		if status != 400 || errorBody(t, body)["type"] != "invalid_request_error" || (tt.code != "" && errorBody(t, body)["code"] != tt.code) {
			t.Errorf("%s: %d %v", tt.query, status, body)
		}
	}
	// An exact creation time, and a customer (the sandbox has none).
	exact, sameSecond := all[5].Created, 0
	for _, p := range all {
		if p.Created.Equal(exact) {
			sameSecond++
		}
	}
	status, _, body := e.do(t, http.MethodGet, fmt.Sprintf("/v1/payment_intents?created=%d&limit=100", exact.Unix()), testKey, "", nil)
	if status != 200 || len(body["data"].([]any)) != sameSecond || sameSecond != 3 {
		t.Errorf("created=%d: %d items, want %d (3)", exact.Unix(), len(body["data"].([]any)), sameSecond)
	}
	status, _, body = e.do(t, http.MethodGet, "/v1/payment_intents?customer=cus_1", testKey, "", nil)
	if status != 200 || len(body["data"].([]any)) != 0 || body["has_more"] != false {
		t.Errorf("customer: %d %v", status, body)
	}
	status, _, body = e.do(t, http.MethodGet, "/v1/payment_intents?limit=2&created[gte]=0", testKey, "", nil)
	if status != 200 || body["object"] != "list" || body["url"] != "/v1/payment_intents" || body["has_more"] != true || len(body["data"].([]any)) != 2 {
		t.Errorf("list shape: %d %v", status, body)
	}
}

func TestRefund(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	p, err := e.charge(t, "don_1", "pm_card_visa", "k1")
	if err != nil {
		t.Fatal(err)
	}
	r1, err := e.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(p.ID), Amount: stripe.Int64(1000)})
	if err != nil || r1.Amount != 1000 || r1.Status != "succeeded" || r1.PaymentIntent.ID != p.ID {
		t.Fatalf("partial refund: %+v, %v", r1, err)
	}
	_, err = e.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(p.ID), Amount: stripe.Int64(2000)})
	if se, ok := err.(*stripe.Error); !ok || se.Code != "amount_too_large" {
		t.Errorf("over-refund: %v", err)
	}
	r2, err := e.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(p.ID)})
	if err != nil || r2.Amount != 1500 {
		t.Fatalf("rest refund: %+v, %v", r2, err)
	}
	_, err = e.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(p.ID)})
	if se, ok := err.(*stripe.Error); !ok || se.Code != "charge_already_refunded" {
		t.Errorf("refund of a refunded charge: %v", err)
	}
	got, err := e.api.V1Refunds.Retrieve(ctx, r1.ID, nil)
	if err != nil || got.ID != r1.ID || got.Amount != 1000 {
		t.Errorf("retrieve refund: %+v, %v", got, err)
	}
	_, err = e.charge(t, "don_2", "pm_card_chargeDeclined", "k2")
	declined := providerError(t, err, floodgate.ProviderCard).Payment
	if _, err := e.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(declined.ID)}); err == nil {
		t.Error("refunded a declined PaymentIntent")
	}
	if l := e.s.Ledger(); l.PaymentIntents[0].AmountRefunded != 2500 {
		t.Errorf("ledger refunded = %d", l.PaymentIntents[0].AmountRefunded)
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t, Options{})
	base := url.Values{"amount": {"2500"}, "currency": {"eur"}, "payment_method": {"pm_card_visa"}, "confirm": {"true"}, "payment_method_types[0]": {"card"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for key, vals := range base {
			f[key] = vals
		}
		if v == "" {
			delete(f, k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name   string
		form   url.Values
		status int
		code   string
		param  string
	}{
		{"missing amount", with("amount", ""), 400, "parameter_missing", "amount"},
		{"bad amount", with("amount", "ten"), 400, "parameter_invalid_integer", "amount"},
		{"amount too small", with("amount", "49"), 400, "amount_too_small", "amount"},
		{"amount too small gbp", set(with("currency", "gbp"), "amount", "29"), 400, "amount_too_small", "amount"},
		{"amount too large", with("amount", "100000000"), 400, "amount_too_large", "amount"},
		{"missing currency", with("currency", ""), 400, "parameter_missing", "currency"},
		{"unknown currency", with("currency", "xyz"), 400, "", "currency"},
		{"unknown parameter", with("colour", "blue"), 400, "parameter_unknown", "colour"},
		{"redirect method", with("payment_method_types[0]", "ideal"), 400, "payment_intent_invalid_parameter", "payment_method_types"},
		{"manual capture", with("capture_method", "manual"), 400, "", "capture_method"},
		{"bad boolean", with("confirm", "yes"), 400, "", "confirm"},
		{"unknown payment method", with("payment_method", "pm_nope"), 400, "resource_missing", "payment_method"},
		{"automatic methods need return_url", with("payment_method_types[0]", ""), 400, "", "return_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.do(t, http.MethodPost, "/v1/payment_intents", testKey, "", tt.form)
			eb := errorBody(t, body)
			if status != tt.status || eb["code"] != nilIfEmpty(tt.code) || eb["param"] != tt.param || eb["type"] != "invalid_request_error" {
				t.Errorf("%d %v", status, eb)
			}
			if h.Get("Request-Id") == "" {
				t.Error("no Request-Id")
			}
		})
	}
	// A request refused by validation is not stored: the same key then
	// executes the corrected request.
	status, _, _ := e.do(t, http.MethodPost, "/v1/payment_intents", testKey, "fix-me", with("amount", ""))
	if status != 400 {
		t.Fatalf("invalid request: %d", status)
	}
	status, h, body := e.do(t, http.MethodPost, "/v1/payment_intents", testKey, "fix-me", base)
	if status != 200 || body["status"] != "succeeded" || h.Get("Idempotent-Replayed") != "" {
		t.Errorf("corrected request under the same key: %d %v %v", status, h, body)
	}
	// Unknown routes and objects.
	if status, _, body := e.do(t, http.MethodGet, "/v1/charges", testKey, "", nil); status != 404 || !strings.Contains(errorBody(t, body)["message"].(string), "Unrecognized request URL") {
		t.Errorf("unknown route: %d %v", status, body)
	}
	if status, _, body := e.do(t, http.MethodGet, "/v1/payment_intents/pi_nope", testKey, "", nil); status != 404 || errorBody(t, body)["code"] != "resource_missing" {
		t.Errorf("unknown PaymentIntent: %d %v", status, body)
	}
	if status, _, _ := e.do(t, http.MethodPost, "/v1/payment_intents", testKey, "", url.Values{"metadata[a][b]": {"c"}, "amount": {"100"}, "currency": {"eur"}}); status != 400 {
		t.Errorf("nested metadata: %d", status)
	}
}

// set returns v with k set to val.
func set(v url.Values, k, val string) url.Values {
	v.Set(k, val)
	return v
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, Options{APIKeys: []string{testKey}})
	tests := []struct {
		name, key, message string
	}{
		{"missing", "", "You did not provide an API key"},
		{"unknown", "sk_test_someone_else", "Invalid API Key provided: sk_test_"},
		{"malformed", "hello", "Invalid API Key provided"},
		{"live", "sk_live_0123456789abcdef", "live mode keys"},
		{"publishable", "pk_test_0123456789abcdef", "publishable API key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.do(t, http.MethodGet, "/v1/payment_intents", tt.key, "", nil)
			eb := errorBody(t, body)
			if status != 401 || eb["type"] != "invalid_request_error" || !strings.Contains(eb["message"].(string), tt.message) {
				t.Errorf("%d %v", status, eb)
			}
			if h.Get("Request-Id") == "" || h.Get("WWW-Authenticate") == "" {
				t.Errorf("headers %v", h)
			}
			if tt.key != "" && strings.Contains(eb["message"].(string), tt.key) && len(tt.key) > 12 {
				t.Error("the message repeats the whole key")
			}
		})
	}
	bad := adapter(t, e.url, "sk_test_someone_else")
	_, err := bad.Payment(context.Background(), "pi_x")
	if pe := providerError(t, err, floodgate.ProviderAuth); pe.HTTPStatus != 401 {
		t.Errorf("adapter: %+v", pe)
	}
	if l := e.s.Ledger(); l.Counts.Requests != 0 {
		t.Errorf("unauthenticated requests counted: %d", l.Counts.Requests)
	}
}

func TestBrowserAccess(t *testing.T) {
	// A page tokenises a card with a publishable key, across origins, as
	// Stripe.js does; the same key may do nothing else.
	e := newEnv(t, Options{})
	req, _ := http.NewRequest(http.MethodOptions, e.url+"/v1/payment_methods", nil)
	req.Header.Set("Origin", "http://localhost:8080")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	status, h, body := e.do(t, http.MethodPost, "/v1/payment_methods", "pk_test_page", "", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})
	if status != 200 || body["object"] != "payment_method" || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Stripe-Version") != stripe.APIVersion {
		t.Errorf("publishable tokenisation: %d %v %v", status, h, body)
	}
	if status, _, _ := e.do(t, http.MethodGet, "/v1/payment_intents", "pk_test_page", "", nil); status != 401 {
		t.Errorf("publishable key on a secret endpoint: %d", status)
	}
	if status, _, _ := e.do(t, http.MethodPost, "/v1/payment_methods", "pk_live_page", "", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}}); status != 401 {
		t.Errorf("live publishable key: %d", status)
	}

	cresp, err := http.Get(e.url + "/_sandbox/cards")
	if err != nil {
		t.Fatal(err)
	}
	defer cresp.Body.Close()
	var cards []Card
	if err := json.NewDecoder(cresp.Body).Decode(&cards); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cards, Cards()) || len(cards) != len(testCards) || cards[0].PaymentMethod != "pm_card_visa" || cards[0].Fingerprint != cardsByName["visa"].fingerprint() {
		t.Errorf("cards: %+v", cards[:1])
	}
	for _, c := range cards {
		if c.Outcome == "" || c.Last4 != c.Number[len(c.Number)-4:] {
			t.Errorf("card %+v", c)
		}
	}
}
