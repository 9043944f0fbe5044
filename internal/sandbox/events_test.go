package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// listEventsPage asks GET /v1/events?query and returns the page.
func (e *env) listEventsPage(tb testing.TB, query string) (items []map[string]any, more bool) {
	tb.Helper()
	status, _, body := e.do(tb, http.MethodGet, "/v1/events?"+query, testKey, "", nil)
	if status != 200 || body["object"] != "list" || body["url"] != "/v1/events" {
		tb.Fatalf("GET /v1/events?%s: %d %v", query, status, body)
	}
	for _, d := range body["data"].([]any) {
		items = append(items, d.(map[string]any))
	}
	return items, body["has_more"].(bool)
}

func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it["id"].(string)
	}
	return out
}

// object is an event's data.object.
func object(ev map[string]any) map[string]any {
	return ev["data"].(map[string]any)["object"].(map[string]any)
}

// emitted is one event a scenario expects, in the order it happened: its
// type, PaymentIntent, second after the scenario's start, and the
// idempotency key of the request that caused it ("" for none, auto for an
// automatic event, which names no request).
type emitted struct {
	typ, pi string
	second  int
	key     string
	auto    bool
}

// eventScenario makes 13 events over four seconds, several in each: every
// type the sandbox emits, events caused by requests with and without an
// idempotency key, and automatic ones (a 3-D Secure verdict, a dispute).
// It returns them oldest first, and the Request-Id of the first charge.
func eventScenario(t *testing.T, e *env) ([]emitted, string) {
	t.Helper()
	ctx := context.Background()
	status, h, a := e.do(t, http.MethodPost, "/v1/payment_intents", testKey, "k0", url.Values{
		"amount": {"2500"}, "currency": {"eur"}, "payment_method": {"pm_card_visa"}, "confirm": {"true"},
		"metadata[donation_id]": {"don_0"}, "payment_method_types[0]": {"card"}})
	if status != 200 || a["status"] != "succeeded" {
		t.Fatalf("charge: %d %v", status, a)
	}
	aID := a["id"].(string)
	_, err := e.charge(t, "don_1", "pm_card_chargeDeclined", "k1")
	b := providerError(t, err, floodgate.ProviderCard).Payment
	e.clock.Advance(time.Second)
	c, err := e.charge(t, "don_2", "pm_card_authenticationRequired", "k2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pay.CancelPayment(ctx, c.ID, "cancel_k2"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	rp := &stripe.RefundCreateParams{PaymentIntent: stripe.String(aID), Amount: stripe.Int64(500)}
	rp.SetIdempotencyKey("k_refund")
	if _, err := e.api.V1Refunds.Create(ctx, rp); err != nil {
		t.Fatal(err)
	}
	status, _, d := e.do(t, http.MethodPost, "/v1/payment_intents", testKey, "", url.Values{
		"amount": {"700"}, "currency": {"eur"}, "metadata[donation_id]": {"don_3"}})
	if status != 200 {
		t.Fatalf("create without a key: %d %v", status, d)
	}
	dID := d["id"].(string)
	e.clock.Advance(time.Second)
	f, err := e.charge(t, "don_4", "pm_card_threeDSecure2Required", "k4")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := e.do(t, http.MethodPost, "/_sandbox/3ds/"+f.ID+"/complete", "", "", url.Values{"client_secret": {f.ClientSecret}}); status != 200 {
		t.Fatalf("3-D Secure: %d %v", status, body)
	}
	if status, _, body := e.do(t, http.MethodPost, "/_sandbox/payment_intents/"+aID+"/dispute", "", "", url.Values{}); status != 200 {
		t.Fatalf("dispute: %d %v", status, body)
	}
	return []emitted{
		{"payment_intent.created", aID, 0, "k0", false}, {"payment_intent.succeeded", aID, 0, "k0", false},
		{"payment_intent.created", b.ID, 0, "k1", false}, {"payment_intent.payment_failed", b.ID, 0, "k1", false},
		{"payment_intent.created", c.ID, 1, "k2", false}, {"payment_intent.requires_action", c.ID, 1, "k2", false},
		{"payment_intent.canceled", c.ID, 1, "cancel_k2", false},
		{"charge.refunded", aID, 2, "k_refund", false}, {"payment_intent.created", dID, 2, "", false},
		{"payment_intent.created", f.ID, 3, "k4", false}, {"payment_intent.requires_action", f.ID, 3, "k4", false},
		{"payment_intent.succeeded", f.ID, 3, "", true}, {"charge.dispute.created", aID, 3, "", true},
	}, h.Get("Request-Id")
}

// piOf is the PaymentIntent an event is about.
func piOf(ev map[string]any) string {
	obj := object(ev)
	if obj["object"] == "payment_intent" {
		return obj["id"].(string)
	}
	pi, _ := obj["payment_intent"].(string)
	return pi
}

func TestEventsList(t *testing.T) {
	e := newEnv(t, Options{})
	start := e.clock.Now().Unix()
	want, firstReq := eventScenario(t, e)

	// Everything, newest first, as it happened.
	all, more := e.listEventsPage(t, "limit=100")
	if more || len(all) != len(want) {
		t.Fatalf("%d events (has_more %v), want %d", len(all), more, len(want))
	}
	for i, ev := range all {
		w := want[len(want)-1-i]
		if ev["type"] != w.typ || piOf(ev) != w.pi || ev["created"] != float64(start+int64(w.second)) ||
			ev["object"] != "event" || ev["livemode"] != false || ev["api_version"] != stripe.APIVersion ||
			ev["pending_webhooks"] != float64(0) || !strings.HasPrefix(ev["id"].(string), "evt_") {
			t.Errorf("event %d: %v, want %+v", i, ev, w)
		}
	}
	byID := map[string]map[string]any{}
	for _, ev := range all {
		byID[ev["id"].(string)] = ev
	}
	oldest := all[len(all)-1]

	t.Run("request", func(t *testing.T) {
		for i, ev := range all {
			w := want[len(want)-1-i]
			req := ev["request"].(map[string]any)
			id, _ := req["id"].(string)
			wantReq := map[string]any{"id": id, "idempotency_key": nil}
			if w.key != "" {
				wantReq["idempotency_key"] = w.key
			}
			switch {
			case w.auto:
				wantReq["id"] = nil
			case !strings.HasPrefix(id, "req_"):
				t.Errorf("%s of %s: request %v", w.typ, w.pi, req)
			case w.key == "k0" && id != firstReq:
				t.Errorf("%s: request id %s, want the charge's Request-Id %s", w.typ, id, firstReq)
			}
			if !reflect.DeepEqual(req, wantReq) {
				t.Errorf("%s of %s: request %v, want %v", w.typ, w.pi, req, wantReq)
			}
		}
	})

	t.Run("snapshots", func(t *testing.T) {
		created, succeeded := object(all[len(all)-1]), object(all[len(all)-2])
		if created["status"] != "requires_confirmation" || succeeded["status"] != "succeeded" ||
			created["metadata"].(map[string]any)["donation_id"] != "don_0" || succeeded["metadata"].(map[string]any)["donation_id"] != "don_0" {
			t.Errorf("snapshots: created %v / %v, succeeded %v", created["status"], created["metadata"], succeeded["status"])
		}
		if refunded := object(all[5]); refunded["object"] != "charge" || refunded["amount_refunded"] != float64(500) {
			t.Errorf("charge.refunded carries %v", refunded)
		}
	})

	t.Run("retrieve", func(t *testing.T) {
		status, _, body := e.do(t, http.MethodGet, "/v1/events/"+oldest["id"].(string), testKey, "", nil)
		if status != 200 || !reflect.DeepEqual(body, oldest) {
			t.Errorf("retrieve: %d %v", status, body)
		}
		status, _, body = e.do(t, http.MethodGet, "/v1/events/evt_nope", testKey, "", nil)
		if status != 404 || errorBody(t, body)["code"] != "resource_missing" || errorBody(t, body)["message"] != "No such event: 'evt_nope'" {
			t.Errorf("retrieve unknown: %d %v", status, body)
		}
	})

	t.Run("filters", func(t *testing.T) {
		typed := func(types ...string) func(map[string]any) bool {
			return func(ev map[string]any) bool { return slices.Contains(types, ev["type"].(string)) }
		}
		within := func(lo, hi int64) func(map[string]any) bool {
			return func(ev map[string]any) bool {
				c := int64(ev["created"].(float64)) - start
				return c >= lo && c <= hi
			}
		}
		cursor := func(i int) string { return all[i]["id"].(string) }
		for _, tt := range []struct {
			query string
			keep  func(map[string]any) bool
			n     int // how many the filter keeps, checked so that no case is empty by mistake
		}{
			{"type=payment_intent.succeeded", typed("payment_intent.succeeded"), 2},
			{"type=payment_intent.*", func(ev map[string]any) bool { return strings.HasPrefix(ev["type"].(string), "payment_intent.") }, 11},
			{"type=charge.*", typed("charge.refunded", "charge.dispute.created"), 2},
			{"type=*.created", typed("payment_intent.created", "charge.dispute.created"), 6},
			{"type=*", func(map[string]any) bool { return true }, 13},
			{"type=payment_intent", typed(), 0},
			{"type=payment_intent.*d", typed("payment_intent.created", "payment_intent.failed", "payment_intent.succeeded", "payment_intent.canceled", "payment_intent.payment_failed"), 9},
			{"types[0]=payment_intent.canceled&types[1]=charge.refunded", typed("payment_intent.canceled", "charge.refunded"), 2},
			{"types[]=payment_intent.created", typed("payment_intent.created"), 5},
			{"types[0]=payment_intent.*", typed(), 0}, // types[] are exact names
			{fmt.Sprintf("created=%d", start+1), within(1, 1), 3},
			{fmt.Sprintf("created[gt]=%d&created[lte]=%d", start, start+2), within(1, 2), 5},
			{fmt.Sprintf("created[gte]=%d", start+2), within(2, 3), 6},
			{fmt.Sprintf("created[lt]=%d", start+1), within(0, 0), 4},
			{fmt.Sprintf("created[gte]=%d&created[lt]=%d", start+3, start+1), within(3, 0), 0},
			{fmt.Sprintf("type=payment_intent.*&created[gte]=%d", start+1),
				func(ev map[string]any) bool {
					return strings.HasPrefix(ev["type"].(string), "payment_intent.") && within(1, 3)(ev)
				}, 7},
			// Cursors with filters: the cursor need not match them.
			{"type=payment_intent.created&starting_after=" + cursor(2), func(ev map[string]any) bool {
				return ev["type"] == "payment_intent.created" && slices.IndexFunc(all, func(o map[string]any) bool { return o["id"] == ev["id"] }) > 2
			}, 5},
			{"type=payment_intent.succeeded&ending_before=" + cursor(len(all)-1), typed("payment_intent.succeeded"), 2},
			{fmt.Sprintf("created=%d&starting_after=%s", start+2, cursor(0)), within(2, 2), 2},
		} {
			var wantIDs []string
			for _, ev := range all {
				if tt.keep(ev) {
					wantIDs = append(wantIDs, ev["id"].(string))
				}
			}
			if len(wantIDs) != tt.n {
				t.Fatalf("%s: the reference keeps %d, the case says %d", tt.query, len(wantIDs), tt.n)
			}
			got, more := e.listEventsPage(t, tt.query+"&limit=100")
			if more || !slices.Equal(ids(got), wantIDs) {
				t.Errorf("%s: %v (has_more %v), want %v", tt.query, ids(got), more, wantIDs)
			}
			// The same in pages of 2, through starting_after.
			if strings.Contains(tt.query, "starting_after") || strings.Contains(tt.query, "ending_before") {
				continue
			}
			var paged []string
			for q := tt.query + "&limit=2"; ; {
				page, more := e.listEventsPage(t, q)
				paged = append(paged, ids(page)...)
				if !more {
					break
				}
				if len(page) != 2 {
					t.Fatalf("%s: a page of %d with has_more", q, len(page))
				}
				q = tt.query + "&limit=2&starting_after=" + page[len(page)-1]["id"].(string)
			}
			if !slices.Equal(paged, wantIDs) {
				t.Errorf("%s in pages of 2: %v, want %v", tt.query, paged, wantIDs)
			}
		}
	})

	t.Run("cursors", func(t *testing.T) {
		// Default page size.
		page, more := e.listEventsPage(t, "")
		if !more || !slices.Equal(ids(page), ids(all[:10])) {
			t.Errorf("default page: %v (has_more %v)", ids(page), more)
		}
		// Forward in pages of 3.
		var fwd []string
		var sizes []int
		for q := "limit=3"; ; {
			page, more := e.listEventsPage(t, q)
			fwd, sizes = append(fwd, ids(page)...), append(sizes, len(page))
			if !more {
				break
			}
			q = "limit=3&starting_after=" + page[len(page)-1]["id"].(string)
		}
		if !slices.Equal(fwd, ids(all)) || !slices.Equal(sizes, []int{3, 3, 3, 3, 1}) {
			t.Errorf("forward: %v in pages %v", fwd, sizes)
		}
		// Backward from the oldest: each page is the events just newer
		// than its cursor, newest first, as Stripe answers ending_before.
		var back [][]string
		for q := "limit=3&ending_before=" + oldest["id"].(string); ; {
			page, more := e.listEventsPage(t, q)
			back = append(back, ids(page))
			if !more {
				break
			}
			q = "limit=3&ending_before=" + page[0]["id"].(string)
		}
		n := len(all)
		wantBack := [][]string{ids(all[n-4 : n-1]), ids(all[n-7 : n-4]), ids(all[n-10 : n-7]), ids(all[0 : n-10])}
		if !reflect.DeepEqual(back, wantBack) {
			t.Errorf("backward: %v, want %v", back, wantBack)
		}
		// The newest has nothing newer, the oldest nothing older.
		if page, more := e.listEventsPage(t, "ending_before="+all[0]["id"].(string)); len(page) != 0 || more {
			t.Errorf("before the newest: %v", ids(page))
		}
		if page, more := e.listEventsPage(t, "starting_after="+oldest["id"].(string)); len(page) != 0 || more {
			t.Errorf("after the oldest: %v", ids(page))
		}
	})

	t.Run("errors", func(t *testing.T) {
		types21 := url.Values{}
		for i := range 21 {
			types21.Add(fmt.Sprintf("types[%d]", i), fmt.Sprintf("t%d", i))
		}
		types20 := url.Values{}
		for i := range 20 {
			types20.Add(fmt.Sprintf("types[%d]", i), "payment_intent.created")
		}
		if page, _ := e.listEventsPage(t, types20.Encode()+"&limit=100"); len(page) != 5 {
			t.Errorf("20 types: %d events, want 5", len(page))
		}
		for _, tt := range []struct {
			query, code, param string
		}{
			{"limit=0", "", "limit"},
			{"limit=101", "", "limit"},
			{"limit=x", "parameter_invalid_integer", "limit"},
			{"created=x", "parameter_invalid_integer", "created"},
			{"created[gte]=x", "parameter_invalid_integer", "created[gte]"},
			{"created[between]=1", "parameter_unknown", "created[between]"},
			{"delivery_success=yes", "", "delivery_success"},
			{"starting_after=evt_nope", "resource_missing", "starting_after"},
			{"ending_before=evt_nope", "resource_missing", "ending_before"},
			{"starting_after=" + oldest["id"].(string) + "&ending_before=" + oldest["id"].(string), "parameters_exclusive", "ending_before"},
			{"type=payment_intent.created&types[0]=payment_intent.created", "parameters_exclusive", "types"},
			{types21.Encode(), "", "types"},
			{"types=payment_intent.created", "", "types"},
			{"type[0]=payment_intent.created", "", "type"},
			{"expand[0]=data.object", "", "expand"},
			{"object_id=pi_1", "parameter_unknown", "object_id"},
		} {
			status, _, body := e.do(t, http.MethodGet, "/v1/events?"+tt.query, testKey, "", nil)
			if status != 400 {
				t.Errorf("%s: %d %v", tt.query, status, body)
				continue
			}
			eb := errorBody(t, body)
			if eb["type"] != "invalid_request_error" || eb["param"] != tt.param || (tt.code != "" && eb["code"] != tt.code) || eb["message"] == "" {
				t.Errorf("%s: %v", tt.query, eb)
			}
		}
	})
}

// TestEventsOfFaults: an answer lost after the write took effect leaves its
// events, naming the key; a 500 before it (stored under the key) and an
// idempotent replay leave none.
func TestEventsOfFaults(t *testing.T) {
	e := newEnv(t, Options{})
	if err := e.s.SetConfig(Config{LoseRate: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := e.charge(t, "don_lost", "pm_card_visa", "key_lost")
	providerError(t, err, floodgate.ProviderNetwork)
	if err := e.s.SetConfig(Config{FailRate: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = e.charge(t, "don_failed", "pm_card_visa", "key_failed")
	providerError(t, err, floodgate.ProviderServer)
	if err := e.s.SetConfig(Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := e.charge(t, "don_lost", "pm_card_visa", "key_lost") // the replay of the lost answer
	if err != nil || p.Status != floodgate.PaymentSucceeded {
		t.Fatalf("replay: %+v, %v", p, err)
	}
	all, _ := e.listEventsPage(t, "limit=100")
	if len(all) != 2 {
		t.Fatalf("%d events, want 2: %v", len(all), all)
	}
	for _, ev := range all {
		req := ev["request"].(map[string]any)
		if req["idempotency_key"] != "key_lost" || object(ev)["id"] != p.ID || object(ev)["metadata"].(map[string]any)["donation_id"] != "don_lost" {
			t.Errorf("event %s: request %v, object %v", ev["type"], req, object(ev)["id"])
		}
	}
}

// TestEventsDeliverySuccess: delivery_success=true lists the events the
// endpoint took; false those still pending, given up on, or never sent
// (not enabled for the endpoint, or no endpoint at all).
func TestEventsDeliverySuccess(t *testing.T) {
	// The endpoint refuses every event about don_bad.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "don_bad") {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	clock := newTestClock()
	s, err := New(Options{Clock: clock, WebhookURL: hook.URL, WebhookSecret: testSecret, WebhookMaxAttempts: 2, WebhookRetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	e := &env{s: s, url: ts.URL, clock: clock, api: rawClient(ts.URL, testKey), pay: adapter(t, ts.URL, testKey)}

	ok, err := e.charge(t, "don_ok", "pm_card_visa", "k_ok")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := e.charge(t, "don_bad", "pm_card_visa", "k_bad")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		typ, pi string
		pending float64
	}
	rows := func(query string) []row {
		t.Helper()
		page, _ := e.listEventsPage(t, query+"&limit=100")
		var out []row
		for _, ev := range page {
			out = append(out, row{ev["type"].(string), piOf(ev), ev["pending_webhooks"].(float64)})
		}
		return out
	}
	// The sender has not started: the succeeded events are pending.
	pendingAll := []row{{"payment_intent.succeeded", bad.ID, 1}, {"payment_intent.created", bad.ID, 0},
		{"payment_intent.succeeded", ok.ID, 1}, {"payment_intent.created", ok.ID, 0}}
	if got := rows("delivery_success=false"); !reflect.DeepEqual(got, pendingAll) {
		t.Errorf("while pending, delivery_success=false: %v", got)
	}
	if got := rows("delivery_success=true"); len(got) != 0 {
		t.Errorf("while pending, delivery_success=true: %v", got)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deliveries done", func() bool {
		c := s.Ledger().Counts
		return c.WebhooksDelivered == 1 && c.WebhooksDropped == 1 && c.WebhooksPending == 0
	})
	if got := rows("delivery_success=true"); !reflect.DeepEqual(got, []row{{"payment_intent.succeeded", ok.ID, 0}}) {
		t.Errorf("delivery_success=true: %v", got)
	}
	want := []row{{"payment_intent.succeeded", bad.ID, 1}, {"payment_intent.created", bad.ID, 0}, {"payment_intent.created", ok.ID, 0}}
	if got := rows("delivery_success=false"); !reflect.DeepEqual(got, want) {
		t.Errorf("delivery_success=false: %v, want %v", got, want)
	}
	if got := rows("delivery_success=false&type=payment_intent.succeeded"); !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("delivery_success=false, succeeded: %v", got)
	}

	t.Run("no endpoint", func(t *testing.T) {
		e := newEnv(t, Options{})
		if _, err := e.charge(t, "don_1", "pm_card_visa", "k1"); err != nil {
			t.Fatal(err)
		}
		if page, _ := e.listEventsPage(t, "delivery_success=true"); len(page) != 0 {
			t.Errorf("delivery_success=true: %v", ids(page))
		}
		if page, _ := e.listEventsPage(t, "delivery_success=false"); len(page) != 2 {
			t.Errorf("delivery_success=false: %v", ids(page))
		}
	})

	t.Run("every type enabled", func(t *testing.T) {
		k := newSink(t, 0)
		e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret, WebhookEvents: []string{"payment_intent.*"}})
		if _, err := e.charge(t, "don_1", "pm_card_visa", "k1"); err != nil {
			t.Fatal(err)
		}
		evs := k.events(t, 2)
		eventually(t, "deliveries marked", func() bool {
			page, _ := e.listEventsPage(t, "delivery_success=true")
			return len(page) == 2
		})
		page, _ := e.listEventsPage(t, "delivery_success=true")
		// The log and the deliveries carry the same events.
		got := []string{evs[0].ID, evs[1].ID}
		slices.Sort(got)
		wantIDs := ids(page)
		slices.Sort(wantIDs)
		if !slices.Equal(got, wantIDs) {
			t.Errorf("delivered %v, listed %v", got, wantIDs)
		}
	})
}

// TestEventsBound: the log keeps the newest MaxEvents events.
func TestEventsBound(t *testing.T) {
	e := newEnv(t, Options{MaxEvents: 5})
	var first []string // the first charge's events
	for i := range 4 {
		if _, err := e.charge(t, fmt.Sprintf("don_%d", i), "pm_card_visa", fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			page, _ := e.listEventsPage(t, "")
			first = ids(page)
		}
	}
	all, more := e.listEventsPage(t, "limit=100")
	if len(all) != 5 || more || all[4]["type"] != "payment_intent.succeeded" || object(all[4])["metadata"].(map[string]any)["donation_id"] != "don_1" {
		t.Fatalf("kept %d: %v", len(all), ids(all))
	}
	if c := e.s.Ledger().Counts; c.EventsKept != 5 || c.EventsEvicted != 3 || c.Events != 8 {
		t.Errorf("counts %+v", c)
	}
	// The forgotten are gone for cursors and retrieval too; so, as in
	// Stripe, is every event more than 30 days old.
	if len(first) != 2 {
		t.Fatalf("the first charge made %v", first)
	}
	e.clock.Advance(30 * 24 * time.Hour)
	if page, _ := e.listEventsPage(t, "limit=100"); len(page) != 5 {
		t.Errorf("%d events 30 days on, want 5", len(page))
	}
	e.clock.Advance(time.Second)
	if page, _ := e.listEventsPage(t, "limit=100"); len(page) != 0 {
		t.Errorf("%d events 30 days and a second on, want none", len(page))
	}
	first = append(first, ids(all)...)
	for _, id := range first {
		if status, _, body := e.do(t, http.MethodGet, "/v1/events?starting_after="+id, testKey, "", nil); status != 400 || errorBody(t, body)["code"] != "resource_missing" {
			t.Errorf("cursor %s: %d %v", id, status, body)
		}
		if status, _, _ := e.do(t, http.MethodGet, "/v1/events/"+id, testKey, "", nil); status != 404 {
			t.Errorf("retrieve %s: %d", id, status)
		}
	}
}

// TestEventsSurviveRestart: the journal keeps the events, as listed, and
// whether each was delivered; events after the restart come after them.
func TestEventsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.jsonl")
	clock := newTestClock()
	k := newSink(t, 0)
	e1 := newEnv(t, Options{StatePath: path, Clock: clock, WebhookURL: k.url, WebhookSecret: testSecret})
	for i := range 3 {
		if _, err := e1.charge(t, fmt.Sprintf("don_%d", i), "pm_card_visa", fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	_, err := e1.charge(t, "don_x", "pm_card_chargeDeclined", "kx")
	providerError(t, err, floodgate.ProviderCard)
	k.events(t, 4)
	eventually(t, "deliveries marked", func() bool {
		page, _ := e1.listEventsPage(t, "delivery_success=true")
		return len(page) == 4
	})
	before, _ := e1.listEventsPage(t, "limit=100")
	if len(before) != 8 {
		t.Fatalf("%d events before the restart", len(before))
	}
	// The deliveries happened after the last change: only Close writes
	// them to the journal.
	if err := e1.s.Close(); err != nil {
		t.Fatal(err)
	}

	e2 := newEnv(t, Options{StatePath: path, Clock: clock})
	after, _ := e2.listEventsPage(t, "limit=100")
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after the restart:\n%v\nbefore:\n%v", after, before)
	}
	if page, _ := e2.listEventsPage(t, "delivery_success=true"); len(page) != 4 {
		t.Errorf("%d delivered after the restart, want 4", len(page))
	}
	p, err := e2.charge(t, "don_new", "pm_card_visa", "knew")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := e2.listEventsPage(t, "limit=100")
	if len(all) != 10 || piOf(all[0]) != p.ID || piOf(all[1]) != p.ID || !reflect.DeepEqual(all[2:], before) {
		t.Errorf("after a new charge: %v", ids(all))
	}
	// And once more, through a compaction.
	e2.s.mu.Lock()
	err = e2.s.journal.compact(e2.s.snapshot())
	e2.s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	e2.s.Close()
	e3 := newEnv(t, Options{StatePath: path, Clock: clock})
	if again, _ := e3.listEventsPage(t, "limit=100"); !reflect.DeepEqual(again, all) {
		t.Errorf("after compaction and restart: %v, want %v", ids(again), ids(all))
	}
}

// TestDateHeader: every answer is dated by the sandbox's clock, not the
// machine's, and an object's created is never after the Date of the
// answer that made it.
func TestDateHeader(t *testing.T) {
	clock := newTestClock()
	clock.Set(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	e := newEnv(t, Options{Clock: clock})
	check := func(method, path, key string, form url.Values, wantStatus int) map[string]any {
		t.Helper()
		status, h, body := e.do(t, method, path, key, "", form)
		if status != wantStatus {
			t.Fatalf("%s %s: %d %v", method, path, status, body)
		}
		want := clock.Now().Format(http.TimeFormat)
		if got := h.Get("Date"); got != want || len(h.Values("Date")) != 1 {
			t.Errorf("%s %s (%d): Date %q, want %q", method, path, status, h.Values("Date"), want)
		}
		return body
	}
	pi := check(http.MethodPost, "/v1/payment_intents", testKey, url.Values{"amount": {"900"}, "currency": {"eur"}}, 200)
	if pi["created"] != float64(clock.Now().Unix()) {
		t.Errorf("created %v", pi["created"])
	}
	clock.Advance(90 * time.Minute)
	check(http.MethodGet, "/v1/events", testKey, nil, 200)
	check(http.MethodGet, "/v1/events?limit=0", testKey, nil, 400)
	check(http.MethodGet, "/v1/events", "", nil, 401)
	check(http.MethodGet, "/v1/nothing", testKey, nil, 404)
	check(http.MethodGet, "/_sandbox/ledger", "", nil, 200)
	clock.Advance(-3 * time.Hour) // a clock set back is followed too
	check(http.MethodGet, "/v1/payment_intents/"+pi["id"].(string), testKey, nil, 200)
}

// TestEventsStripeGo lists events with stripe-go's own client and
// iterators: the parameters it sends are accepted, the pages it reads
// decode, and its auto-pagination, forward and backward, sees every event
// once, in order.
func TestEventsStripeGo(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	start := e.clock.Now().Unix()
	const n = 30
	for i := range n {
		if i%4 == 0 {
			e.clock.Advance(time.Second)
		}
		pm := "pm_card_visa"
		if i%5 == 0 {
			pm = "pm_card_chargeDeclined"
		}
		_, _ = e.charge(t, fmt.Sprintf("don_%d", i), pm, fmt.Sprintf("key_%d", i))
	}
	raw, _ := e.listEventsPage(t, "limit=100")
	if len(raw) != 2*n {
		t.Fatalf("%d events, want %d", len(raw), 2*n)
	}
	collect := func(p *stripe.EventListParams) ([]string, []*stripe.Event) {
		t.Helper()
		var got []string
		var evs []*stripe.Event
		for ev, err := range e.api.V1Events.List(ctx, p).All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			got, evs = append(got, ev.ID), append(evs, ev)
		}
		return got, evs
	}
	filter := func(keep func(map[string]any) bool) []string {
		var out []string
		for _, ev := range raw {
			if keep(ev) {
				out = append(out, ev["id"].(string))
			}
		}
		return out
	}

	p := &stripe.EventListParams{}
	p.Limit = stripe.Int64(7)
	got, evs := collect(p)
	if !slices.Equal(got, ids(raw)) {
		t.Errorf("forward: %d events, want %d in the list's order", len(got), len(raw))
	}
	for i, ev := range evs {
		w := raw[i]
		obj := object(w)
		if string(ev.Type) != w["type"] || ev.Created != int64(w["created"].(float64)) || ev.APIVersion != stripe.APIVersion ||
			ev.Livemode || ev.PendingWebhooks != 0 || ev.Request == nil ||
			ev.Request.IdempotencyKey != w["request"].(map[string]any)["idempotency_key"] || ev.Request.ID != w["request"].(map[string]any)["id"] ||
			ev.Data == nil || ev.Data.Object["id"] != obj["id"] ||
			ev.Data.Object["metadata"].(map[string]any)["donation_id"] != obj["metadata"].(map[string]any)["donation_id"] {
			t.Fatalf("event %d as stripe-go reads it: %+v, request %+v", i, ev, ev.Request)
		}
	}

	p = &stripe.EventListParams{Types: stripe.StringSlice([]string{"payment_intent.created", "payment_intent.payment_failed"}),
		CreatedRange: &stripe.RangeQueryParams{GreaterThan: start + 2, LesserThanOrEqual: start + 6}}
	p.Limit = stripe.Int64(4)
	got, _ = collect(p)
	want := filter(func(ev map[string]any) bool {
		c := int64(ev["created"].(float64))
		return (ev["type"] == "payment_intent.created" || ev["type"] == "payment_intent.payment_failed") && c > start+2 && c <= start+6
	})
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("types and created range: %v, want %v", got, want)
	}

	p = &stripe.EventListParams{Type: stripe.String("payment_intent.*"), DeliverySuccess: stripe.Bool(false), Created: stripe.Int64(start + 3)}
	p.Limit = stripe.Int64(3)
	got, _ = collect(p)
	want = filter(func(ev map[string]any) bool { return ev["created"] == float64(start+3) })
	if len(want) != 8 || !slices.Equal(got, want) {
		t.Errorf("type wildcard, delivery_success=false, created=%d: %v, want %v", start+3, got, want)
	}

	// Backward from an event in the middle: stripe-go reverses each page
	// and goes on from the newest it saw, so it yields the newer events
	// oldest first.
	p = &stripe.EventListParams{}
	p.Limit = stripe.Int64(6)
	p.EndingBefore = stripe.String(raw[40]["id"].(string))
	got, _ = collect(p)
	want = ids(raw[:40])
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("backward: %d events, want %d oldest first", len(got), len(want))
	}

	ev, err := e.api.V1Events.Retrieve(ctx, raw[7]["id"].(string), nil)
	if err != nil || ev.ID != raw[7]["id"] || ev.Data.Object["id"] != object(raw[7])["id"] {
		t.Errorf("retrieve: %+v, %v", ev, err)
	}
}
