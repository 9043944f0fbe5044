package stripe

import (
	"net/http"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func TestKindOf(t *testing.T) {
	tests := []struct {
		status     int
		typ, code  string
		want       floodgate.ProviderErrorKind
		wantUnsure bool
	}{
		{429, "invalid_request_error", "lock_timeout", floodgate.ProviderLockTimeout, false},
		{429, "invalid_request_error", "rate_limit", floodgate.ProviderRateLimited, false},
		{429, "", "", floodgate.ProviderRateLimited, false},
		{400, "idempotency_error", "", floodgate.ProviderIdempotency, true},
		{409, "idempotency_error", "idempotency_key_in_use", floodgate.ProviderIdempotency, true},
		{409, "api_error", "idempotency_key_in_use", floodgate.ProviderIdempotency, true},
		{500, "api_error", "", floodgate.ProviderServer, true},
		{503, "", "", floodgate.ProviderServer, true},
		{402, "card_error", "card_declined", floodgate.ProviderCard, false},
		{400, "card_error", "incorrect_number", floodgate.ProviderCard, false},
		{401, "invalid_request_error", "", floodgate.ProviderAuth, false},
		{403, "invalid_request_error", "", floodgate.ProviderAuth, false},
		{404, "invalid_request_error", "resource_missing", floodgate.ProviderNotFound, false},
		{400, "invalid_request_error", "parameter_missing", floodgate.ProviderInvalid, false},
		{400, "invalid_request_error", "payment_intent_unexpected_state", floodgate.ProviderInvalid, false},
		{409, "invalid_request_error", "", floodgate.ProviderInvalid, false},
	}
	for _, tt := range tests {
		got := kindOf(tt.status, tt.typ, tt.code)
		if got != tt.want {
			t.Errorf("kindOf(%d, %q, %q) = %s, want %s", tt.status, tt.typ, tt.code, got, tt.want)
		}
		if unsure := (&floodgate.ProviderError{Kind: got}).Unknown(); unsure != tt.wantUnsure {
			t.Errorf("kindOf(%d, %q, %q): unknown outcome = %v", tt.status, tt.typ, tt.code, unsure)
		}
	}
}

func TestReusedPaymentMethod(t *testing.T) {
	for msg, want := range map[string]bool{
		"The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, shared with a connected account without Customer attachment, or was detached from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer first.": true,
		"This PaymentMethod was previously used without being attached to a Customer or was detached from a Customer, and may not be used again.":                                                                                                                                                                 true,
		"No such PaymentMethod: 'pm_123'": false,
		"":                                false,
	} {
		if got := reusedPaymentMethod(msg); got != want {
			t.Errorf("reusedPaymentMethod(%q) = %v", msg, got)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-2", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tt.v, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestCompatible(t *testing.T) {
	for _, tt := range []struct {
		pinned, event string
		want          bool
	}{
		{"2026-03-25.dahlia", "2026-03-25.dahlia", true},
		{"2026-03-25.dahlia", "2026-06-01.dahlia", true},
		{"2026-03-25.dahlia", "2025-09-30.clover", false},
		{"2026-03-25.dahlia", "2024-06-20", false},
		{"2026-03-25.dahlia", "", false},
		{"2026-04-01.preview", "2026-04-01.preview", true},
		{"2026-04-01.preview", "2026-05-01.preview", false},
	} {
		if got := compatible(tt.pinned, tt.event); got != tt.want {
			t.Errorf("compatible(%q, %q) = %v", tt.pinned, tt.event, got)
		}
	}
}

func TestMember(t *testing.T) {
	body := []byte(`{"error":{"type":"card_error","payment_intent":{"id":"pi_1","next_action":{"type":"use_stripe_sdk"}}}}`)
	if got := string(member(errorPI(body), "next_action")); got != `{"type":"use_stripe_sdk"}` {
		t.Errorf("next_action = %s", got)
	}
	for _, raw := range []string{``, `null`, `[]`, `{"next_action":null}`, `{"other":1}`, `not json`} {
		if got := member([]byte(raw), "next_action"); got != nil {
			t.Errorf("member(%q) = %s, want nil", raw, got)
		}
	}
}

func TestCheckCharge(t *testing.T) {
	ok := floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_1"), Amount: 2500, Currency: "eur", PaymentMethod: "pm_card_visa", IdempotencyKey: "k"}
	if err := checkCharge(ok); err != nil {
		t.Errorf("valid request refused: %v", err)
	}
	bad := []func(*floodgate.ChargeRequest){
		func(r *floodgate.ChargeRequest) { r.IdempotencyKey = "" },
		func(r *floodgate.ChargeRequest) { r.PaymentMethod = "" },
		func(r *floodgate.ChargeRequest) { r.Metadata = map[string]string{"campaign": "c"} },
		func(r *floodgate.ChargeRequest) { r.Amount = 0 },
		func(r *floodgate.ChargeRequest) { r.Currency = "" },
		func(r *floodgate.ChargeRequest) { r.IdempotencyKey = string(make([]byte, 256)) },
	}
	for i, change := range bad {
		r := ok
		change(&r)
		err := checkCharge(r)
		pe, isPE := err.(*floodgate.ProviderError)
		if !isPE || pe.Kind != floodgate.ProviderInvalid {
			t.Errorf("case %d: %v", i, err)
		}
	}
	// Confirming an existing PaymentIntent needs no amount or donation.
	if err := checkCharge(floodgate.ChargeRequest{PaymentIntentID: "pi_1", PaymentMethod: "pm_card_visa", IdempotencyKey: "k"}); err != nil {
		t.Errorf("confirm refused: %v", err)
	}
}
