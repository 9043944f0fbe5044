package cli

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestBadInput sends every kind of bad donation request to a real server:
// each is answered with problem+json naming the field, and the server
// keeps serving.
func TestBadInput(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	admin := []string{"Authorization", "Bearer " + testAdminToken}
	if r := c.do("POST", "/v1/campaigns", `{"id": "closed", "name": "Closed", "currency": "eur"}`, admin...); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := c.do("PATCH", "/v1/campaigns/closed", `{"closes_at": "now"}`, admin...); r.status != http.StatusOK {
		t.Fatalf("close: %d %s", r.status, r.body)
	}

	// body builds a donation body with one field replaced; "-" removes it.
	body := func(field, value string) string {
		fields := [][2]string{{"amount", `2500`}, {"currency", `"eur"`}, {"email", `"aoife@example.ie"`},
			{"name", `"Aoife"`}, {"payment_method", `"pm_card_visa"`}, {"message", `"Go on!"`}}
		found := false
		var parts []string
		for _, f := range fields {
			if f[0] == field {
				found = true
				if value == "-" {
					continue
				}
				f[1] = value
			}
			parts = append(parts, fmt.Sprintf("%q: %s", f[0], f[1]))
		}
		if !found && value != "-" {
			parts = append(parts, fmt.Sprintf("%q: %s", field, value))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	good := body("", "-")
	decl := func(d string) string { return body("declaration", d) }

	tests := []struct {
		name     string
		campaign string
		body     string
		ctype    string // "" = application/json
		key      string // "" = a fresh key; "-" = none
		status   int
		typ      string
		field    string
	}{
		{"amount missing", "demo", body("amount", "-"), "", "", 400, "validation_failed", "amount"},
		{"amount below the campaign minimum", "demo", body("amount", "499"), "", "", 400, "validation_failed", "amount"},
		{"amount above the maximum", "demo", body("amount", "1000001"), "", "", 400, "validation_failed", "amount"},
		{"amount negative", "demo", body("amount", "-5"), "", "", 400, "validation_failed", "amount"},
		{"amount a float", "demo", body("amount", "25.00"), "", "", 400, "validation_failed", "amount"},
		{"amount a string", "demo", body("amount", `"2500"`), "", "", 400, "validation_failed", "amount"},
		{"currency missing", "demo", body("currency", "-"), "", "", 400, "validation_failed", "currency"},
		{"currency mismatch", "demo", body("currency", `"usd"`), "", "", 400, "validation_failed", "currency"},
		{"email missing", "demo", body("email", "-"), "", "", 400, "validation_failed", "email"},
		{"email malformed", "demo", body("email", `"not-an-email"`), "", "", 400, "validation_failed", "email"},
		{"email over-long", "demo", body("email", `"`+strings.Repeat("a", 250)+`@example.ie"`), "", "", 400, "validation_failed", "email"},
		{"name over-long", "demo", body("name", `"`+strings.Repeat("n", 201)+`"`), "", "", 400, "validation_failed", "name"},
		{"name with a control character", "demo", body("name", `"Ao\u0000ife"`), "", "", 400, "validation_failed", "name"},
		{"message with a control character", "demo", body("message", `"hi\u001b[2J"`), "", "", 400, "validation_failed", "message"},
		{"message over-long", "demo", body("message", `"`+strings.Repeat("m", 501)+`"`), "", "", 400, "validation_failed", "message"},
		{"payment method missing", "demo", body("payment_method", "-"), "", "", 400, "validation_failed", "payment_method"},
		{"payment method not a token", "demo", body("payment_method", `"4242 4242 4242 4242"`), "", "", 400, "validation_failed", "payment_method"},
		{"anonymous not a boolean", "demo", body("anonymous", `1`), "", "", 400, "validation_failed", "anonymous"},
		{"unknown field", "demo", body("card_number", `"4242424242424242"`), "", "", 400, "validation_failed", "card_number"},
		{"field in another letter case", "demo", strings.Replace(good, `"amount"`, `"Amount"`, 1), "", "", 400, "validation_failed", "Amount"},
		{"field given twice", "demo", strings.Replace(good, `"amount": 2500`, `"amount": 2500, "amount": 1`, 1), "", "", 400, "validation_failed", "amount"},
		{"malformed JSON", "demo", `{"amount": 2500, "currency": `, "", "", 400, "validation_failed", "body"},
		{"not an object", "demo", `"donation"`, "", "", 400, "validation_failed", "body"},
		{"two objects", "demo", good + good, "", "", 400, "validation_failed", "body"},
		{"invalid UTF-8", "demo", strings.Replace(good, "Aoife", "Ao\xffife", 1), "", "", 400, "validation_failed", "body"},
		{"declaration incomplete", "demo", decl(`{"scheme": "uk_gift_aid", "text_version": "2026-01", "first_name": "Aoife", "last_name": "Byrne"}`), "", "", 400, "validation_failed", "declaration.house"},
		{"declaration bad postcode", "demo", decl(`{"scheme": "uk_gift_aid", "text_version": "2026-01", "first_name": "A", "last_name": "B", "house": "12", "postcode": "D02 X285"}`), "", "", 400, "validation_failed", "declaration.postcode"},
		{"declaration unknown scheme", "demo", decl(`{"scheme": "fr", "text_version": "1", "first_name": "A", "last_name": "B"}`), "", "", 400, "validation_failed", "declaration.scheme"},
		{"declaration unknown field", "demo", decl(`{"scheme": "ie", "text_version": "1", "first_name": "A", "last_name": "B", "pps": "1"}`), "", "", 400, "validation_failed", "declaration.pps"},
		{"body over 16 KiB", "demo", body("message", `"`+strings.Repeat("x", 17<<10)+`"`), "", "", 413, "payload_too_large", ""},
		{"wrong content type", "demo", good, "text/plain", "", 415, "unsupported_media_type", ""},
		{"form content type", "demo", "amount=2500", "application/x-www-form-urlencoded", "", 415, "unsupported_media_type", ""},
		{"not UTF-8 charset", "demo", good, "application/json; charset=latin1", "", 415, "unsupported_media_type", ""},
		{"unknown campaign", "nope", good, "", "", 404, "not_found", ""},
		{"campaign id out of pattern", "NOPE%20x", good, "", "", 404, "not_found", ""},
		{"closed campaign", "closed", good, "", "", 409, "campaign_closed", ""},
		{"Idempotency-Key missing", "demo", good, "", "-", 400, "validation_failed", "Idempotency-Key"},
		{"Idempotency-Key over-long", "demo", good, "", strings.Repeat("k", 256), 400, "validation_failed", "Idempotency-Key"},
		{"Idempotency-Key not ASCII", "demo", good, "", "clé-été", 400, "validation_failed", "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype := tt.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			key := tt.key
			switch key {
			case "":
				key = freshKey()
			case "-":
				key = ""
			}
			r := c.do("POST", "/v1/campaigns/"+tt.campaign+"/donations", tt.body, "Content-Type", ctype, "Idempotency-Key", key)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, compactJSON(r.body))
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			p := r.json(t)
			if p["type"] != tt.typ || num(p["status"]) != int64(tt.status) || p["title"] == "" {
				t.Fatalf("problem = %s", compactJSON(r.body))
			}
			if tt.field == "" {
				return
			}
			named := false
			errs, _ := p["errors"].([]any)
			for _, e := range errs {
				if f, _ := e.(map[string]any); f["field"] == tt.field && f["message"] != "" {
					named = true
				}
			}
			if !named {
				t.Fatalf("problem does not name field %q: %s", tt.field, compactJSON(r.body))
			}
		})
	}

	// Still serving, and nothing bad was kept.
	if r := c.do("GET", "/healthz", ""); r.status != http.StatusOK {
		t.Fatalf("healthz after bad input: %d", r.status)
	}
	if tot := c.totals("demo"); num(tot["pending"]) != 0 || num(tot["raised"]) != 0 {
		t.Fatalf("bad input reached the totals: %v", tot)
	}
	c.donate(good)
}

// TestErrorsNeverLeakInternals: unknown routes and ids answer a clean
// problem+json, and a 5xx never carries a cause.
func TestErrorsNeverLeakInternals(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	for _, path := range []string{"/v1/nothing", "/v1/donations/don_nope", "/v1/donations/don_00000000000000000000000000", "/v1/campaigns/x/totals"} {
		r := c.do("GET", path, "")
		if r.status != http.StatusNotFound || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	if r := c.do("DELETE", "/v1/campaigns/demo", ""); r.status != http.StatusMethodNotAllowed && r.status != http.StatusNotFound {
		t.Fatalf("DELETE: %d", r.status)
	}
}

// TestSandboxNotPublic: of the in-process sandbox, only the 3-D Secure
// challenge page is on floodgate's public port; its API, ledger and fault
// switches are not.
func TestSandboxNotPublic(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	for _, probe := range []struct{ method, path string }{
		{"GET", "/sandbox/_sandbox/ledger"}, {"GET", "/sandbox/_sandbox/config"}, {"POST", "/sandbox/_sandbox/config"},
		{"POST", "/sandbox/v1/payment_intents"}, {"GET", "/sandbox/v1/payment_intents"},
	} {
		if r := c.do(probe.method, probe.path, "", "Authorization", "Bearer sk_test_x"); r.status != http.StatusNotFound {
			t.Fatalf("%s %s on the public port: %d", probe.method, probe.path, r.status)
		}
	}
	if r := c.do("GET", "/sandbox/_sandbox/3ds/pi_nope?client_secret=x", ""); r.status == http.StatusNotFound && strings.Contains(string(r.body), "<!doctype html>") {
		t.Fatalf("the challenge page route is not mounted: %s", r.body)
	}
}
