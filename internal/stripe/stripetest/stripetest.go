// Package stripetest is the contract floodgate holds Stripe to: one suite
// of behavioural tests of Stripe's API as floodgate relies on it, written
// once against the adapter (floodgate.Provider over stripe-go), and against
// raw stripe-go where the adapter hides what must be seen (response headers,
// small list pages). Run runs it against any Stripe-compatible target: the
// sandbox always (internal/sandbox), Stripe's own test mode when a test key
// is given (internal/stripe). The sandbox is thereby held to Stripe's
// behaviour, and floodgate's assumptions about Stripe to Stripe itself: a
// case that fails against only one of them is a difference to fix in the
// sandbox, or an assumption to fix in floodgate.
//
// The suite uses only Stripe's documented test payment methods
// (pm_card_visa, pm_card_chargeDeclined, pm_card_authenticationRequired)
// and test tokens (tok_visa, tok_mastercard). Every run makes its own
// donation ids and idempotency keys, since a real account keeps keys for a
// day; it can pace itself under the account's rate limit; and on the way
// out it cancels what it left awaiting a payment method or the donor.
// PaymentIntents that succeeded and payment methods stay: Stripe keeps
// them, and test mode moves no money.
package stripetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
	"golang.org/x/time/rate"

	"github.com/floodgate/floodgate"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

// Target is a Stripe-compatible API to run the suite against.
type Target struct {
	// APIBase is the API's base URL; "" is Stripe's own.
	APIBase string
	// SecretKey is a test-mode secret key of the target account.
	SecretKey string
	// Rate, when positive, paces the suite to that many requests per
	// second, to stay under a real account's limits (Stripe's test mode
	// allows 25 per second).
	Rate float64
}

// callTimeout bounds one call; Stripe answers in well under a second.
const callTimeout = 30 * time.Second

// Run runs every case of the contract against tgt, one after another.
func Run(t *testing.T, tgt Target) {
	s := newSuite(t, tgt)
	t.Run("VisaSucceedsKeepingMetadata", s.testVisaSucceeds)
	t.Run("DeclineCarriesPaymentIntentThenAnotherCardSucceeds", s.testDeclineThenAnotherCard)
	t.Run("AuthenticationRequiredThenCanceled", s.testAuthenticationThenCancel)
	t.Run("CancelAfterSuccessIsUnexpectedState", s.testCancelAfterSuccess)
	t.Run("IdempotencyKeyReplaysOrRefuses", s.testIdempotency)
	t.Run("ListByCreationWindowAndCursor", s.testList)
	t.Run("CardFingerprintIsOneForEveryTokenisation", s.testCardFingerprint)
	t.Run("UnknownPaymentIntentIsResourceMissing", s.testUnknown)
	t.Run("BadKeyIs401", s.testBadKey)
}

// suite is one run of the contract against one target.
type suite struct {
	tgt Target
	// run makes this run's donation ids and idempotency keys unique.
	run  string
	rec  *Recorder
	http *http.Client
	// pay is the adapter, seen only as floodgate sees it.
	pay floodgate.Provider
	// api is raw stripe-go, for what the adapter does not show.
	api *stripe.Client

	mu sync.Mutex
	// seen is the last status seen of each PaymentIntent the run made.
	seen map[string]floodgate.PaymentStatus
}

func newSuite(t *testing.T, tgt Target) *suite {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	base := http.DefaultTransport
	if tgt.Rate > 0 {
		base = &paced{base: base, lim: rate.NewLimiter(rate.Limit(tgt.Rate), 1)}
	}
	s := &suite{tgt: tgt, run: hex.EncodeToString(b), rec: &Recorder{Base: base}, seen: map[string]floodgate.PaymentStatus{}}
	s.http = &http.Client{Transport: s.rec, Timeout: callTimeout}
	s.pay = s.adapter(t, tgt.SecretKey)
	cfg := &stripe.BackendConfig{
		HTTPClient:        s.http,
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	}
	if tgt.APIBase != "" {
		cfg.URL = stripe.String(tgt.APIBase)
	}
	s.api = stripe.NewClient(tgt.SecretKey, stripe.WithBackends(stripe.NewBackendsWithConfig(cfg)))
	t.Logf("contract run %s (metadata.contract_run)", s.run)
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// adapter is floodgate's adapter for the target, with key.
func (s *suite) adapter(tb testing.TB, key string) floodgate.Provider {
	tb.Helper()
	c, err := fgstripe.New(fgstripe.Options{SecretKey: key, APIBase: s.tgt.APIBase, HTTPClient: s.http})
	if err != nil {
		tb.Fatalf("adapter: %v", err)
	}
	return c
}

func (s *suite) donation(name string) string { return "don_contract_" + s.run + "_" + name }

func (s *suite) key(name string, attempt any) string {
	return fmt.Sprintf("floodgate-contract-%s-%s-%v", s.run, name, attempt)
}

// gift is the charge floodgate's dispatcher makes for donation name.
func (s *suite) gift(name, pm string) floodgate.ChargeRequest {
	return floodgate.ChargeRequest{Amount: 2500, Currency: "eur", PaymentMethod: pm,
		IdempotencyKey: s.key(name, 1), Description: "floodgate contract " + name,
		Metadata: map[string]string{"contract_run": s.run, floodgate.MetaDonation: s.donation(name)}}
}

// callCtx bounds one call.
func callCtx(tb testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	tb.Cleanup(cancel)
	return c
}

// charge calls the adapter's Charge and notes the PaymentIntent that came
// back, in an answer or in an error.
func (s *suite) charge(tb testing.TB, r floodgate.ChargeRequest) (*floodgate.Payment, error) {
	tb.Helper()
	p, err := s.pay.Charge(callCtx(tb), r)
	s.note(p)
	var pe *floodgate.ProviderError
	if errors.As(err, &pe) {
		s.note(pe.Payment)
	}
	return p, err
}

func (s *suite) note(p *floodgate.Payment) {
	if p == nil || p.ID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[p.ID] = p.Status
}

// cleanup cancels the PaymentIntents the run left awaiting something.
func (s *suite) cleanup(t *testing.T) {
	s.mu.Lock()
	var open []string
	for id, st := range s.seen {
		switch st {
		case floodgate.PaymentRequiresPaymentMethod, floodgate.PaymentRequiresConfirmation, floodgate.PaymentRequiresAction:
			open = append(open, id)
		}
	}
	s.mu.Unlock()
	for _, id := range open {
		c, cancel := context.WithTimeout(context.Background(), callTimeout)
		if _, err := s.pay.CancelPayment(c, id, ""); err != nil {
			t.Logf("cleanup: cancel %s: %v", id, err)
		}
		cancel()
	}
}

// providerError asserts that err is a *floodgate.ProviderError of kind.
func providerError(tb testing.TB, err error, kind floodgate.ProviderErrorKind) *floodgate.ProviderError {
	tb.Helper()
	var pe *floodgate.ProviderError
	if !errors.As(err, &pe) {
		tb.Fatalf("error %v (%T) is not a ProviderError of kind %s", err, err, kind)
	}
	if pe.Kind != kind {
		tb.Fatalf("kind %s, want %s: %v", pe.Kind, kind, err)
	}
	return pe
}

// payments lists every PaymentIntent of q.
func (s *suite) payments(tb testing.TB, q floodgate.PaymentQuery) []*floodgate.Payment {
	tb.Helper()
	all, err := floodgate.AllPayments(callCtx(tb), s.pay, q)
	if err != nil {
		tb.Fatalf("listing %+v: %v", q, err)
	}
	return all
}

// testVisaSucceeds: create and confirm with pm_card_visa succeeds at once,
// keeping metadata (donation_id is how floodgate finds a PaymentIntent
// again), and the card's fingerprint is there for the fraud limits.
func (s *suite) testVisaSucceeds(t *testing.T) {
	r := s.gift("visa", "pm_card_visa")
	p, err := s.charge(t, r)
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if p.Status != floodgate.PaymentSucceeded || p.DonationID() != r.Metadata[floodgate.MetaDonation] || p.Metadata["contract_run"] != s.run ||
		p.Amount != r.Amount || p.Currency != r.Currency || p.Created.IsZero() || p.ClientSecret == "" || p.NextAction != nil ||
		p.PaymentMethod == "" || p.Fingerprint == "" {
		t.Errorf("payment %+v", p)
	}
	got, err := s.pay.Payment(callCtx(t), p.ID)
	if err != nil {
		t.Fatalf("Payment: %v", err)
	}
	if got.ID != p.ID || got.Status != floodgate.PaymentSucceeded || got.DonationID() != r.Metadata[floodgate.MetaDonation] ||
		!got.Created.Equal(p.Created) || got.Fingerprint != p.Fingerprint {
		t.Errorf("retrieved %+v, created %+v", got, p)
	}
}

// testDeclineThenAnotherCard: a decline is a 402 card_error carrying the
// PaymentIntent, back in requires_payment_method with last_payment_error,
// and the answer stored under the key; confirming that same PaymentIntent
// with another card succeeds, so the donation has one PaymentIntent.
func (s *suite) testDeclineThenAnotherCard(t *testing.T) {
	r := s.gift("declined", "pm_card_chargeDeclined")
	_, err := s.charge(t, r)
	pe := providerError(t, err, floodgate.ProviderCard)
	if pe.HTTPStatus != http.StatusPaymentRequired || pe.Type != "card_error" || pe.Code != "card_declined" ||
		pe.DeclineCode != "generic_decline" || pe.RequestID == "" || pe.Message == "" {
		t.Errorf("decline %+v", pe)
	}
	p := pe.Payment
	if p == nil {
		t.Fatal("the decline carries no PaymentIntent")
	}
	if p.Status != floodgate.PaymentRequiresPaymentMethod || p.DonationID() != r.Metadata[floodgate.MetaDonation] || p.FailureCode != "card_declined" ||
		p.DeclineCode != "generic_decline" || p.FailedPaymentMethod == "" || p.Fingerprint == "" || p.Created.IsZero() {
		t.Errorf("declined payment %+v", p)
	}
	// The decline is the stored answer to the key: sent again, it comes
	// back as it was, PaymentIntent and all.
	_, err = s.charge(t, r)
	if rpe := providerError(t, err, floodgate.ProviderCard); rpe.Payment == nil || rpe.Payment.ID != p.ID ||
		s.rec.Last().Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the decline replayed: %+v (headers %v)", rpe, s.rec.Last().Header)
	}
	again, err := s.charge(t, floodgate.ChargeRequest{Metadata: r.Metadata, PaymentIntentID: p.ID,
		PaymentMethod: "pm_card_visa", IdempotencyKey: s.key("declined", 2)})
	if err != nil {
		t.Fatalf("confirm with another card: %v", err)
	}
	if again.ID != p.ID || again.Status != floodgate.PaymentSucceeded || again.DonationID() != r.Metadata[floodgate.MetaDonation] {
		t.Errorf("after the second card %+v", again)
	}
	mine := s.payments(t, floodgate.PaymentQuery{CreatedFrom: p.Created, CreatedTo: p.Created, Metadata: floodgate.DonationLookup(r.Metadata[floodgate.MetaDonation])})
	if len(mine) != 1 || mine[0].ID != p.ID || mine[0].Status != floodgate.PaymentSucceeded {
		t.Errorf("the donation's PaymentIntents: %+v", mine)
	}
}

// testAuthenticationThenCancel: a card that needs 3-D Secure leaves the
// PaymentIntent in requires_action with a next_action and the client
// secret the browser needs; canceling it (a donor who never finished)
// leaves it canceled, and the cancel replays under its key.
func (s *suite) testAuthenticationThenCancel(t *testing.T) {
	r := s.gift("3ds", "pm_card_authenticationRequired")
	p, err := s.charge(t, r)
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	var next struct {
		Type string `json:"type"`
	}
	if p.Status != floodgate.PaymentRequiresAction || p.ClientSecret == "" || json.Unmarshal(p.NextAction, &next) != nil || next.Type == "" {
		t.Fatalf("payment %+v, next_action %s", p, p.NextAction)
	}
	canceled, err := s.pay.CancelPayment(callCtx(t), p.ID, s.key("3ds", "cancel"))
	s.note(canceled)
	if err != nil {
		t.Fatalf("CancelPayment: %v", err)
	}
	if canceled.ID != p.ID || canceled.Status != floodgate.PaymentCanceled || canceled.NextAction != nil {
		t.Errorf("canceled %+v", canceled)
	}
	again, err := s.pay.CancelPayment(callCtx(t), p.ID, s.key("3ds", "cancel"))
	if err != nil || again.ID != p.ID || again.Status != floodgate.PaymentCanceled || s.rec.Last().Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("cancel replayed: %+v, %v", again, err)
	}
	got, err := s.pay.Payment(callCtx(t), p.ID)
	if err != nil || got.Status != floodgate.PaymentCanceled {
		t.Errorf("retrieved after cancel: %+v, %v", got, err)
	}
}

// testCancelAfterSuccess: a PaymentIntent that succeeded cannot be
// canceled; the 400 payment_intent_unexpected_state carries it, so that
// floodgate learns it succeeded after all.
func (s *suite) testCancelAfterSuccess(t *testing.T) {
	p, err := s.charge(t, s.gift("settled", "pm_card_visa"))
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	_, err = s.pay.CancelPayment(callCtx(t), p.ID, s.key("settled", "cancel"))
	pe := providerError(t, err, floodgate.ProviderInvalid)
	if pe.HTTPStatus != http.StatusBadRequest || pe.Code != "payment_intent_unexpected_state" || pe.RequestID == "" {
		t.Errorf("cancel %+v", pe)
	}
	if pe.Payment == nil || pe.Payment.ID != p.ID || pe.Payment.Status != floodgate.PaymentSucceeded {
		t.Errorf("the error's PaymentIntent %+v", pe.Payment)
	}
}

// testIdempotency: the same key with the same parameters replays the first
// answer (the same PaymentIntent, Idempotent-Replayed: true); the same key
// with other parameters, or on another endpoint, is a 400
// idempotency_error, an outcome floodgate treats as unknown. Either way
// there is one PaymentIntent.
func (s *suite) testIdempotency(t *testing.T) {
	r := s.gift("replay", "pm_card_visa")
	first, err := s.charge(t, r)
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if x := s.rec.Last(); x.Header.Get("Idempotent-Replayed") == "true" {
		t.Errorf("a fresh key's answer says it was replayed: %s", x)
	}
	second, err := s.charge(t, r)
	if err != nil {
		t.Fatalf("Charge again: %v", err)
	}
	if x := s.rec.Last(); x.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the replay lacks Idempotent-Replayed: true (headers %v)", x.Header)
	}
	if second.ID != first.ID || second.Status != first.Status || !second.Created.Equal(first.Created) {
		t.Errorf("replayed %+v, first %+v", second, first)
	}
	other := r
	other.Amount++
	_, err = s.charge(t, other)
	pe := providerError(t, err, floodgate.ProviderIdempotency)
	if pe.HTTPStatus != http.StatusBadRequest || pe.Type != "idempotency_error" || !pe.Unknown() || pe.RequestID == "" {
		t.Errorf("other parameters %+v", pe)
	}
	// So is the same key on another endpoint (confirming the PaymentIntent).
	_, err = s.charge(t, floodgate.ChargeRequest{Metadata: r.Metadata, PaymentIntentID: first.ID,
		PaymentMethod: "pm_card_visa", IdempotencyKey: r.IdempotencyKey})
	if pe := providerError(t, err, floodgate.ProviderIdempotency); pe.HTTPStatus != http.StatusBadRequest || pe.Type != "idempotency_error" {
		t.Errorf("another endpoint %+v", pe)
	}
	mine := s.payments(t, floodgate.PaymentQuery{CreatedFrom: first.Created, CreatedTo: first.Created, Metadata: floodgate.DonationLookup(r.Metadata[floodgate.MetaDonation])})
	if len(mine) != 1 || mine[0].ID != first.ID {
		t.Errorf("the donation's PaymentIntents: %+v", mine)
	}
}

// testList: listing a creation window (both ends included) finds a
// PaymentIntent by metadata.donation_id, newest first, and pages with
// starting_after, through the adapter and in pages of one through
// stripe-go. Other PaymentIntents may share the window (on a real account,
// other runs'); the checks hold whatever they are.
func (s *suite) testList(t *testing.T) {
	var made []*floodgate.Payment
	for _, name := range []string{"list-a", "list-b", "list-c"} {
		p, err := s.charge(t, s.gift(name, "pm_card_visa"))
		if err != nil {
			t.Fatalf("Charge %s: %v", name, err)
		}
		made = append(made, p)
	}
	from, to := made[0].Created, made[0].Created
	for _, p := range made {
		from, to = minTime(from, p.Created), maxTime(to, p.Created)
	}
	window := floodgate.PaymentQuery{CreatedFrom: from, CreatedTo: to}

	all := s.payments(t, window)
	pos := map[string]int{}
	for i, p := range all {
		if _, dup := pos[p.ID]; dup {
			t.Fatalf("%s listed twice", p.ID)
		}
		pos[p.ID] = i
		if i > 0 && p.Created.After(all[i-1].Created) {
			t.Errorf("not newest first: %s (%v) after %s (%v)", p.ID, p.Created, all[i-1].ID, all[i-1].Created)
		}
		if p.Created.Before(from) || p.Created.After(to) {
			t.Errorf("%s created %v, outside [%v, %v]", p.ID, p.Created, from, to)
		}
	}
	var ours []string // in list order
	for _, p := range all {
		for _, m := range made {
			if p.ID == m.ID {
				ours = append(ours, p.ID)
				if p.DonationID() != m.DonationID() || p.Status != floodgate.PaymentSucceeded {
					t.Errorf("listed %+v", p)
				}
			}
		}
	}
	if len(ours) != len(made) {
		t.Fatalf("the window lists %d of the %d PaymentIntents made in it", len(ours), len(made))
	}

	// By donation id: exactly its PaymentIntent.
	one := s.payments(t, floodgate.PaymentQuery{CreatedFrom: from, CreatedTo: to, Metadata: floodgate.DonationLookup(made[1].DonationID())})
	if len(one) != 1 || one[0].ID != made[1].ID {
		t.Errorf("by donation id: %+v", one)
	}
	// After a cursor: what follows it, not it.
	after := window
	after.After = ours[0]
	rest := s.payments(t, after)
	got := map[string]bool{}
	for _, p := range rest {
		got[p.ID] = true
		if i, listed := pos[p.ID]; listed && i <= pos[ours[0]] {
			t.Errorf("after %s came %s, listed before it", ours[0], p.ID)
		}
	}
	if got[ours[0]] || !got[ours[1]] || !got[ours[2]] {
		t.Errorf("after %s: %v", ours[0], got)
	}
	// A window that ends before them holds none of them.
	for _, p := range s.payments(t, floodgate.PaymentQuery{CreatedFrom: from.Add(-time.Hour), CreatedTo: from.Add(-time.Second)}) {
		for _, m := range made {
			if p.ID == m.ID {
				t.Errorf("%s (created %v) listed in a window that ends before %v", p.ID, p.Created, from)
			}
		}
	}

	// Pages of one, with stripe-go: the same items in the same order.
	lp := &stripe.PaymentIntentListParams{CreatedRange: &stripe.RangeQueryParams{
		GreaterThanOrEqual: from.Unix(), LesserThanOrEqual: to.Unix()}}
	lp.Limit = stripe.Int64(1)
	lp.Single = true
	var paged []string
	for page := 0; ; page++ {
		if page > len(all)+10 {
			t.Fatalf("more than %d pages of one for %d items", page, len(all))
		}
		l := s.api.V1PaymentIntents.List(callCtx(t), lp)
		if err := l.Err(); err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(l.Data()) > 1 {
			t.Fatalf("page %d has %d items with limit 1", page, len(l.Data()))
		}
		for _, pi := range l.Data() {
			paged = append(paged, pi.ID)
		}
		if !l.Meta().HasMore {
			break
		}
		if len(l.Data()) == 0 {
			t.Fatalf("page %d is empty and says more follow", page)
		}
		lp.StartingAfter = stripe.String(l.Data()[0].ID)
	}
	var pagedOurs []string
	seen := map[string]bool{}
	for _, id := range paged {
		if seen[id] {
			t.Fatalf("%s paged twice", id)
		}
		seen[id] = true
		for _, m := range made {
			if id == m.ID {
				pagedOurs = append(pagedOurs, id)
			}
		}
	}
	if fmt.Sprint(pagedOurs) != fmt.Sprint(ours) {
		t.Errorf("pages of one give %v, the adapter %v", pagedOurs, ours)
	}
}

// testCardFingerprint: every tokenisation of a card makes a new payment
// method with the same card fingerprint, another card has another, and a
// charge reports the fingerprint of its card: what floodgate's limits per
// card rest on.
func (s *suite) testCardFingerprint(t *testing.T) {
	tokenise := func(token string) string {
		t.Helper()
		pm, err := s.api.V1PaymentMethods.Create(callCtx(t), &stripe.PaymentMethodCreateParams{Type: stripe.String("card"),
			Card: &stripe.PaymentMethodCreateCardParams{Token: stripe.String(token)}})
		if err != nil {
			t.Fatalf("tokenising %s: %v", token, err)
		}
		return pm.ID
	}
	fingerprint := func(pm string) string {
		t.Helper()
		fp, err := s.pay.CardFingerprint(callCtx(t), pm)
		if err != nil {
			t.Fatalf("CardFingerprint(%s): %v", pm, err)
		}
		return fp
	}
	visa1, visa2, mastercard := tokenise("tok_visa"), tokenise("tok_visa"), tokenise("tok_mastercard")
	if visa1 == visa2 {
		t.Errorf("two tokenisations made one payment method %s", visa1)
	}
	fp1, fp2, fpm := fingerprint(visa1), fingerprint(visa2), fingerprint(mastercard)
	if fp1 == "" || fp1 != fp2 || fpm == "" || fpm == fp1 {
		t.Errorf("fingerprints: visa %q and %q, mastercard %q", fp1, fp2, fpm)
	}
	p, err := s.charge(t, s.gift("fingerprint", visa1))
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if p.Fingerprint != fp1 || p.PaymentMethod != visa1 {
		t.Errorf("charged %+v, fingerprint %q", p, fp1)
	}
	_, err = s.pay.CardFingerprint(callCtx(t), "pm_3Floodgate"+s.run+"Missing")
	if pe := providerError(t, err, floodgate.ProviderNotFound); pe.HTTPStatus != http.StatusNotFound || pe.Code != "resource_missing" {
		t.Errorf("an unknown payment method: %+v", pe)
	}
}

// testUnknown: retrieving an id that does not exist is a 404
// resource_missing, which floodgate reads as "no such PaymentIntent".
func (s *suite) testUnknown(t *testing.T) {
	_, err := s.pay.Payment(callCtx(t), "pi_3Floodgate"+s.run+"Missing")
	pe := providerError(t, err, floodgate.ProviderNotFound)
	if pe.HTTPStatus != http.StatusNotFound || pe.Code != "resource_missing" || pe.RequestID == "" {
		t.Errorf("unknown id %+v", pe)
	}
}

// testBadKey: a key the account does not have is a 401, which stops
// floodgate charging: a configuration fault, never a decline.
func (s *suite) testBadKey(t *testing.T) {
	bad := s.adapter(t, "sk_test_51Floodgate"+s.run+"Revoked")
	_, err := bad.Payment(callCtx(t), "pi_3Floodgate"+s.run+"Missing")
	if pe := providerError(t, err, floodgate.ProviderAuth); pe.HTTPStatus != http.StatusUnauthorized {
		t.Errorf("retrieve with a bad key %+v", pe)
	}
	_, err = bad.Charge(callCtx(t), s.gift("bad-key", "pm_card_visa"))
	if pe := providerError(t, err, floodgate.ProviderAuth); pe.HTTPStatus != http.StatusUnauthorized || pe.Payment != nil {
		t.Errorf("charge with a bad key %+v", pe)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// paced waits for its limiter before each request.
type paced struct {
	base http.RoundTripper
	lim  *rate.Limiter
}

func (p *paced) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := p.lim.Wait(r.Context()); err != nil {
		return nil, err
	}
	return p.base.RoundTrip(r)
}
