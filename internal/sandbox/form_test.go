package sandbox

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v85"
	stripeform "github.com/stripe/stripe-go/v85/form"
)

func TestParseForm(t *testing.T) {
	tests := []struct {
		raw   string
		paths [][]string
		ok    bool
	}{
		{"amount=2500&currency=eur", [][]string{{"amount"}, {"currency"}}, true},
		{"metadata[donation_id]=don_1", [][]string{{"metadata", "donation_id"}}, true},
		{"expand[0]=a&expand[]=b", [][]string{{"expand", "0"}, {"expand", ""}}, true},
		{"metadata%5Bkey%5D=v", [][]string{{"metadata", "key"}}, true},
		{"a[b][c]=1", [][]string{{"a", "b", "c"}}, true},
		{"&&a=1&", [][]string{{"a"}}, true},
		{"a", [][]string{{"a"}}, true},
		{"[a]=1", nil, false},
		{"a[b=1", nil, false},
		{"a]b=1", nil, false},
		{"a[b]c=1", nil, false},
		{"a[[b]]=1", nil, false},
		{"=1", nil, false},
		{"a=%zz", nil, false},
		{"a[1][2][3][4][5][6]=1", nil, false},
	}
	for _, tt := range tests {
		f, err := parseForm(tt.raw)
		if (err == nil) != tt.ok {
			t.Errorf("parseForm(%q) error = %v", tt.raw, err)
			continue
		}
		if !tt.ok {
			continue
		}
		var got [][]string
		for _, fl := range f.fields {
			got = append(got, fl.path)
		}
		if !reflect.DeepEqual(got, tt.paths) {
			t.Errorf("parseForm(%q) = %q, want %q", tt.raw, got, tt.paths)
		}
	}
}

func TestFormAccessors(t *testing.T) {
	f, err := parseForm("expand[1]=b&expand[0]=a&metadata[x]=1&metadata[y]=&amount=1&amount=2&types[]=c&types[]=d")
	if err != nil {
		t.Fatal(err)
	}
	if l, ok, e := f.list("expand"); e != nil || !ok || !reflect.DeepEqual(l, []string{"a", "b"}) {
		t.Errorf("list(expand) = %v %v %v", l, ok, e)
	}
	if l, _, e := f.list("types"); e != nil || !reflect.DeepEqual(l, []string{"c", "d"}) {
		t.Errorf("list(types) = %v %v", l, e)
	}
	if h, ok, e := f.hash("metadata"); e != nil || !ok || !reflect.DeepEqual(h, map[string]string{"x": "1", "y": ""}) {
		t.Errorf("hash(metadata) = %v %v %v", h, ok, e)
	}
	if v, ok, e := f.scalar("amount"); e != nil || !ok || v != "2" {
		t.Errorf("scalar(amount) = %q %v %v", v, ok, e)
	}
	if _, _, e := f.scalar("metadata"); e == nil {
		t.Error("scalar(metadata) accepted a hash")
	}
	if _, _, e := f.hash("amount"); e == nil {
		t.Error("hash(amount) accepted a string")
	}
	if e := f.checkNames("expand", "metadata", "amount"); e == nil || e.Code != "parameter_unknown" || e.Param != "types" {
		t.Errorf("checkNames = %+v", e)
	}
	// The canonical form ignores the order parameters came in.
	a, _ := parseForm("b=2&a=1&m[y]=2&m[x]=1")
	b, _ := parseForm("m[x]=1&a=1&m[y]=2&b=2")
	if a.canonical() != b.canonical() {
		t.Errorf("canonical forms differ: %q, %q", a.canonical(), b.canonical())
	}
}

// TestStripeGoEncoding decodes what stripe-go itself encodes.
func TestStripeGoEncoding(t *testing.T) {
	p := &stripe.PaymentIntentCreateParams{
		Amount: stripe.Int64(2500), Currency: stripe.String("eur"), Confirm: stripe.Bool(true),
		PaymentMethodTypes: stripe.StringSlice([]string{"card"}),
		Metadata:           map[string]string{"donation_id": "don_1", "note": "a&b=c [x]"},
	}
	p.AddExpand("payment_method")
	v := &stripeform.Values{}
	stripeform.AppendTo(v, p)
	f, err := parseForm(v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.get("metadata", "note"); got != "a&b=c [x]" {
		t.Errorf("metadata[note] = %q", got)
	}
	if l, _, _ := f.list("payment_method_types"); !reflect.DeepEqual(l, []string{"card"}) {
		t.Errorf("payment_method_types = %v", l)
	}
	if l, _, _ := f.list("expand"); !reflect.DeepEqual(l, []string{"payment_method"}) {
		t.Errorf("expand = %v", l)
	}
	if f.encode() != v.Encode() {
		t.Errorf("re-encoding differs:\n%s\n%s", f.encode(), v.Encode())
	}
}

// FuzzParseForm checks that the decoder never panics, and that whatever it
// accepts survives a round trip through its own encoder unchanged.
func FuzzParseForm(f *testing.F) {
	for _, seed := range []string{
		"amount=2500&currency=eur&payment_method=pm_card_visa&confirm=true",
		"metadata[donation_id]=don_1&payment_method_types[0]=card&expand[0]=payment_method",
		"created[gte]=1700000000&created[lte]=1700003600&limit=100&starting_after=pi_1",
		"card[token]=tok_visa&type=card&billing_details[address][line1]=1+Main+St",
		"a[]=1&a[]=2&a[0]=3", "a[b", "=x", "%", "a=%zz", "a[[b]]=c", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		fm, err := parseForm(raw)
		if err != nil {
			return
		}
		again, err := parseForm(fm.encode())
		if err != nil {
			t.Fatalf("encoding of %q does not parse: %v", raw, err)
		}
		if !reflect.DeepEqual(fm.fields, again.fields) {
			t.Fatalf("round trip of %q changed it:\n%q\n%q", raw, fm.fields, again.fields)
		}
		if fm.canonical() != again.canonical() {
			t.Fatal("canonical form is not stable")
		}
		for _, name := range fm.names() {
			_, _, _ = fm.scalar(name)
			_, _, _ = fm.hash(name)
			_, _, _ = fm.list(name)
		}
	})
}

// FuzzHandlers feeds arbitrary bodies to every endpoint's validation, which
// must answer with a value or a Stripe error, never a panic; the reads
// (lists, retrievals) are then executed too, on a sandbox holding a few
// PaymentIntents and their events, and must answer 200 or a Stripe error.
func FuzzHandlers(f *testing.F) {
	f.Add("amount=2500&currency=eur&payment_method=pm_card_visa&confirm=true&payment_method_types[0]=card")
	f.Add("created[gt]=1&created[lt]=9&limit=3&ending_before=pi_x&expand[0]=data.payment_method")
	f.Add("type=card&card[number]=4242424242424242&card[exp_month]=1&card[exp_year]=2030")
	f.Add("payment_intent=pi_x&amount=-1&metadata[a]=b")
	f.Add("type=payment_intent.*&types[0]=a&types[]=b&delivery_success=false&created=5&starting_after=evt_x")
	f.Add("type=*.created&limit=2&delivery_success=true&created[gte]=0")
	s, err := New(Options{Clock: newTestClock()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	for _, pm := range []string{"pm_card_visa", "pm_card_chargeDeclined", "pm_card_authenticationRequired"} {
		body := "amount=2500&currency=eur&confirm=true&payment_method_types[0]=card&payment_method=" + pm
		req := httptest.NewRequest(http.MethodPost, "/v1/payment_intents", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		s.ServeHTTP(httptest.NewRecorder(), req)
	}
	if s.events.len() != 6 {
		f.Fatalf("the seed made %d events, want 6", s.events.len())
	}
	f.Fuzz(func(t *testing.T, raw string) {
		fm, err := parseForm(raw)
		if err != nil {
			return
		}
		for _, ep := range endpoints {
			run, e := ep.handle(fm, "pi_x")
			if (run == nil) == (e == nil) {
				t.Fatalf("%s: run %v, error %v", ep.name, run != nil, e)
			}
			if e != nil && (e.status < 400 || e.Type == "" || e.Message == "") {
				t.Fatalf("%s: malformed error %+v", ep.name, e)
			}
			if run == nil || ep.method != http.MethodGet {
				continue
			}
			s.mu.Lock()
			resp := run(&exec{s: s, now: s.clock.Now(), base: "http://sandbox.test"})
			s.mu.Unlock()
			var v map[string]any
			if json.Unmarshal(resp.body, &v) != nil || (resp.status != 200 && (resp.status < 400 || v["error"] == nil)) {
				t.Fatalf("%s: %d %s", ep.name, resp.status, resp.body)
			}
		}
	})
}
