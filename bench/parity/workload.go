package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// campaign is the campaign every gift goes to, created through the admin
// API.
const campaign = "parity"

// action is what the workload does to a gift once it is accepted.
type action int

const (
	actNone          action = iota
	actCancel               // the donor cancels it while it waits (charging paused)
	actLateCancel           // the donor tries to cancel it once it succeeded
	actNewCard              // declined, the donor brings another payment method
	actApprove              // 3-D Secure, the donor passes the challenge
	actFailAuth             // 3-D Secure, the donor fails the challenge
	actAbandon              // 3-D Secure, the donor walks away: the action timeout cancels it
	actRefund               // charged, then refunded in full at the provider
	actPartialRefund        // charged, then half refunded
	actDispute              // charged, then disputed by the card holder
)

// scenario is one path a gift can take: the cards it may be posted with
// (one picked per gift), what the workload then does, and the status it
// must end in.
type scenario struct {
	name   string
	weight int
	cards  []string
	act    action
	// second is the payment method brought after a decline (actNewCard).
	second string
	expect floodgate.DonationStatus
}

var (
	succeeded = floodgate.StatusSucceeded
	failed    = floodgate.StatusFailed
	canceled  = floodgate.StatusCanceled
)

// scenarios are every path the workload drives; each is taken at least
// once, the rest of the gifts by weight.
var scenarios = []*scenario{
	{name: "success", weight: 30, cards: []string{"pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_visa_debit"}, expect: succeeded},
	{name: "declined", weight: 4, cards: []string{"pm_card_chargeDeclined"}, expect: failed},
	{name: "insufficient_funds", weight: 3, cards: []string{"pm_card_chargeDeclinedInsufficientFunds"}, expect: failed},
	{name: "lost_stolen_fraudulent", weight: 3, cards: []string{"pm_card_chargeDeclinedLostCard", "pm_card_chargeDeclinedStolenCard",
		"pm_card_chargeDeclinedFraudulent"}, expect: failed},
	{name: "expired_card", weight: 2, cards: []string{"pm_card_chargeDeclinedExpiredCard"}, expect: failed},
	{name: "incorrect_cvc", weight: 2, cards: []string{"pm_card_chargeDeclinedIncorrectCvc"}, expect: failed},
	{name: "new_card", weight: 4, cards: []string{"pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"},
		act: actNewCard, second: "pm_card_visa", expect: succeeded},
	{name: "new_card_declined", weight: 2, cards: []string{"pm_card_chargeDeclinedInsufficientFunds"},
		act: actNewCard, second: "pm_card_chargeDeclined", expect: failed},
	{name: "cancel", weight: 3, cards: []string{"pm_card_visa"}, act: actCancel, expect: canceled},
	{name: "cancel_too_late", weight: 2, cards: []string{"pm_card_visa"}, act: actLateCancel, expect: succeeded},
	{name: "3ds_approved", weight: 4, cards: []string{"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"},
		act: actApprove, expect: succeeded},
	{name: "3ds_approved_declined", weight: 2, cards: []string{"pm_card_authenticationRequiredChargeDeclinedInsufficientFunds"},
		act: actApprove, expect: failed},
	{name: "3ds_failed", weight: 3, cards: []string{"pm_card_authenticationRequired"}, act: actFailAuth, expect: failed},
	{name: "3ds_abandoned", weight: 3, cards: []string{"pm_card_threeDSecure2Required"}, act: actAbandon, expect: canceled},
	{name: "refund", weight: 2, cards: []string{"pm_card_visa"}, act: actRefund, expect: succeeded},
	{name: "partial_refund", weight: 2, cards: []string{"pm_card_mastercard"}, act: actPartialRefund, expect: succeeded},
	{name: "dispute", weight: 2, cards: []string{"pm_card_visa"}, act: actDispute, expect: succeeded},
	{name: "dispute_card", weight: 1, cards: []string{"pm_card_createDispute"}, expect: succeeded},
}

// gift is one donation of the workload.
type gift struct {
	key    string
	sc     *scenario
	card   string
	amount int64
	body   []byte
	// replay: the key is sent again with the same body (the same
	// donation) and with another (refused).
	replay bool

	// Written by the goroutine that drives the gift.
	id, token string
	// answers are the workload's requests about the gift after its
	// first 202 and what they were answered, in order.
	answers []string
}

// donationBody is the request of a gift.
type donationBody struct {
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Email         string `json:"email"`
	Name          string `json:"name"`
	PaymentMethod string `json:"payment_method"`
}

// plan makes n gifts from seed: the same seed, the same gifts, in the same
// order. The first gifts take each scenario once, so that every path is
// driven however small n is.
func plan(seed uint64, n int) ([]*gift, error) {
	if n < len(scenarios) {
		return nil, fmt.Errorf("--gifts %d: at least %d are needed, one for each scenario", n, len(scenarios))
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	total := 0
	for _, s := range scenarios {
		total += s.weight
	}
	gifts := make([]*gift, n)
	for i := range gifts {
		sc := scenarios[i%len(scenarios)]
		if i >= len(scenarios) {
			w := rng.IntN(total)
			for _, s := range scenarios {
				if w -= s.weight; w < 0 {
					sc = s
					break
				}
			}
		}
		g := &gift{key: fmt.Sprintf("parity-%d-%04d", seed, i), sc: sc, card: sc.cards[rng.IntN(len(sc.cards))],
			amount: 100 + 50*rng.Int64N(199), replay: i == 0 || rng.IntN(8) == 0}
		g.body = g.request(g.amount)
		gifts[i] = g
	}
	rng.Shuffle(n, func(i, j int) { gifts[i], gifts[j] = gifts[j], gifts[i] })
	return gifts, nil
}

func (g *gift) request(amount int64) []byte {
	b, _ := json.Marshal(donationBody{Amount: amount, Currency: "eur", Email: g.key + "@example.org",
		Name: "Donor " + g.key, PaymentMethod: g.card})
	return b
}

func (g *gift) note(step string, a answer) {
	g.answers = append(g.answers, fmt.Sprintf("%s: %d %s", step, a.status, bodyWord(a.body)))
}

// workload drives the gifts through one rig.
type workload struct {
	r    *rig
	o    options
	poll time.Duration
}

// drive runs the whole workload and returns once every gift is final and
// every event the sandbox emitted has been delivered to the node.
func (w *workload) drive(ctx context.Context, gifts []*gift) error {
	camp, _ := json.Marshal(map[string]any{"id": campaign, "name": "Parity", "currency": "eur", "goal": 10_000_000,
		"min_amount": 100, "max_amount": 100_000})
	a, err := w.r.do(ctx, http.MethodPost, w.r.nodeURL+"/v1/campaigns", camp, "Authorization", "Bearer "+adminToken)
	if err != nil || a.status != http.StatusCreated {
		return fmt.Errorf("create the campaign: %d %s %v", a.status, a.body, err)
	}
	var cancels, others []*gift
	for _, g := range gifts {
		if g.sc.act == actCancel {
			cancels = append(cancels, g)
		} else {
			others = append(others, g)
		}
	}
	if err := w.cancelWhilePaused(ctx, cancels); err != nil {
		return err
	}

	errs := make(chan error, len(others))
	var wg sync.WaitGroup
	start := time.Now()
	for i, g := range others {
		if !sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/w.o.Rate*float64(time.Second))))) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.one(ctx, g); err != nil {
				errs <- fmt.Errorf("gift %s (%s): %w", g.key, g.sc.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, g := range gifts {
		if _, err := w.waitFor(ctx, g); err != nil {
			return err
		}
	}
	return w.drainEvents(ctx)
}

// cancelWhilePaused posts the gifts to be canceled while charging is
// paused, so that no dispatcher claims one before its donor's cancel
// arrives, cancels them, and resumes charging. The line is empty when it
// begins: no claim under way can take these gifts.
func (w *workload) cancelWhilePaused(ctx context.Context, gifts []*gift) error {
	if err := w.charging(ctx, true); err != nil {
		return err
	}
	// A claim loop that read "running" just before the pause makes at
	// most one more (empty) claim; give it time to.
	sleep(ctx, 500*time.Millisecond)
	for _, g := range gifts {
		if err := w.post(ctx, g); err != nil {
			return err
		}
	}
	for _, g := range gifts {
		if g.id == "" {
			continue
		}
		a, err := w.r.do(ctx, http.MethodPost, w.r.nodeURL+"/v1/donations/"+g.id+"/cancel", nil, "Authorization", "Bearer "+g.token)
		if err != nil {
			return err
		}
		g.note("cancel", a)
	}
	return w.charging(ctx, false)
}

func (w *workload) charging(ctx context.Context, paused bool) error {
	body := []byte(`{"paused": ` + strconv.FormatBool(paused) + `}`)
	a, err := w.r.do(ctx, http.MethodPost, w.r.nodeURL+"/v1/admin/charging", body, "Authorization", "Bearer "+adminToken)
	if err != nil || a.status != http.StatusOK {
		return fmt.Errorf("charging paused=%v: %d %s %v", paused, a.status, a.body, err)
	}
	return nil
}

// one drives a gift from its post to the end of its scenario.
func (w *workload) one(ctx context.Context, g *gift) error {
	if err := w.post(ctx, g); err != nil || g.id == "" {
		return err
	}
	sc := g.sc
	switch sc.act {
	case actNewCard:
		v, err := w.waitFor(ctx, g)
		if err != nil || v.Status != string(failed) {
			return err
		}
		body, _ := json.Marshal(map[string]string{"payment_method": sc.second})
		a, err := w.r.do(ctx, http.MethodPost, w.r.nodeURL+"/v1/donations/"+g.id+"/payment_method", body, "Authorization", "Bearer "+g.token)
		if err != nil {
			return err
		}
		g.note("payment_method", a)
	case actApprove, actFailAuth:
		v, err := w.waitFor(ctx, g, floodgate.StatusRequiresAction)
		if err != nil || v.Status != string(floodgate.StatusRequiresAction) {
			return err
		}
		verdict := "complete"
		if sc.act == actFailAuth {
			verdict = "fail"
		}
		return w.challenge(ctx, g, verdict)
	case actLateCancel, actRefund, actPartialRefund, actDispute:
		v, err := w.waitFor(ctx, g)
		if err != nil || v.Status != string(succeeded) {
			return err
		}
		return w.afterSuccess(ctx, g)
	}
	return nil
}

// post sends the gift until it is answered (a 429, 503 or 409 conflict is
// sent again with the same key), then replays its key when the gift says
// so. An answer other than 202 is noted, and the gift goes no further.
func (w *workload) post(ctx context.Context, g *gift) error {
	send := func(body []byte) (answer, error) {
		for {
			a, err := w.r.do(ctx, http.MethodPost, w.r.nodeURL+"/v1/campaigns/"+campaign+"/donations", body, "Idempotency-Key", g.key)
			if err != nil {
				return a, err
			}
			busy := a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable ||
				a.status == http.StatusConflict && bodyWord(a.body) == "idempotency_conflict"
			if !busy {
				return a, nil
			}
			if !sleep(ctx, 200*time.Millisecond) {
				return a, ctx.Err()
			}
		}
	}
	a, err := send(g.body)
	if err != nil {
		return err
	}
	if a.status != http.StatusAccepted {
		g.note("donate", a)
		return nil
	}
	var acc struct {
		ID         string `json:"id"`
		DonorToken string `json:"donor_token"`
	}
	if err := json.Unmarshal(a.body, &acc); err != nil || acc.ID == "" {
		return fmt.Errorf("202 without an id: %s", a.body)
	}
	g.id, g.token = acc.ID, acc.DonorToken
	if !g.replay {
		return nil
	}
	if a, err = send(g.body); err != nil {
		return err
	}
	var again struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(a.body, &again)
	same := "another id"
	if again.ID == g.id {
		same = "the same id"
	}
	g.answers = append(g.answers, fmt.Sprintf("replay, same body: %d %s, Idempotent-Replayed %q", a.status, same, a.header.Get("Idempotent-Replayed")))
	if a, err = send(g.request(g.amount + 50)); err != nil {
		return err
	}
	g.note("replay, other body", a)
	return nil
}

// challenge answers the gift's 3-D Secure challenge on the sandbox's page,
// as the donor's browser would, with the client secret of the donor's view.
func (w *workload) challenge(ctx context.Context, g *gift, verdict string) error {
	v, err := w.view(ctx, g, true)
	if err != nil {
		return err
	}
	pi, err := w.paymentIntent(ctx, g, "requires_action")
	if err != nil {
		return err
	}
	if v.ClientSecret == nil || pi == "" {
		g.answers = append(g.answers, fmt.Sprintf("3ds %s: no challenge (client secret %v, payment intent %q)", verdict, v.ClientSecret != nil, pi))
		return nil
	}
	a, err := w.r.form(ctx, w.r.sandboxURL+"/_sandbox/3ds/"+pi+"/"+verdict, "client_secret="+url.QueryEscape(*v.ClientSecret))
	if err != nil {
		return err
	}
	g.note("3ds "+verdict, a)
	return nil
}

// afterSuccess does what the gift's scenario does to a charged gift.
func (w *workload) afterSuccess(ctx context.Context, g *gift) error {
	if g.sc.act == actLateCancel {
		a, err := w.r.do(ctx, http.MethodPost, w.r.nodeURL+"/v1/donations/"+g.id+"/cancel", nil, "Authorization", "Bearer "+g.token)
		if err != nil {
			return err
		}
		g.note("cancel", a)
		return nil
	}
	pi, err := w.paymentIntent(ctx, g, "succeeded")
	if err != nil || pi == "" {
		return fmt.Errorf("no succeeded PaymentIntent for a succeeded gift: %v", err)
	}
	var a answer
	switch g.sc.act {
	case actRefund:
		a, err = w.r.form(ctx, w.r.sandboxURL+"/v1/refunds", "payment_intent="+pi, "Authorization", "Bearer "+sandboxKey)
	case actPartialRefund:
		a, err = w.r.form(ctx, w.r.sandboxURL+"/v1/refunds", "payment_intent="+pi+"&amount="+strconv.FormatInt(g.amount/2, 10),
			"Authorization", "Bearer "+sandboxKey)
	case actDispute:
		a, err = w.r.form(ctx, w.r.sandboxURL+"/_sandbox/payment_intents/"+pi+"/dispute", "reason=fraudulent")
	}
	if err != nil {
		return err
	}
	g.note(map[action]string{actRefund: "refund", actPartialRefund: "partial refund", actDispute: "dispute"}[g.sc.act], a)
	return nil
}

// view is a gift's view on the node: the public one, or the donor's.
type view struct {
	Status       string  `json:"status"`
	FailureCode  *string `json:"failure_code"`
	Amount       int64   `json:"amount"`
	Currency     string  `json:"currency"`
	ClientSecret *string `json:"client_secret"`
}

func (w *workload) view(ctx context.Context, g *gift, donor bool) (view, error) {
	var hdr []string
	if donor {
		hdr = []string{"Authorization", "Bearer " + g.token}
	}
	a, err := w.r.do(ctx, http.MethodGet, w.r.nodeURL+"/v1/donations/"+g.id, nil, hdr...)
	if err != nil {
		return view{}, err
	}
	var v view
	if a.status != http.StatusOK {
		return v, fmt.Errorf("GET /v1/donations/%s: %d %s", g.id, a.status, a.body)
	}
	return v, json.Unmarshal(a.body, &v)
}

// waitFor polls the gift until it is final or in one of the statuses
// given. A gift that was never accepted is returned at once.
func (w *workload) waitFor(ctx context.Context, g *gift, statuses ...floodgate.DonationStatus) (view, error) {
	if g.id == "" {
		return view{}, nil
	}
	for {
		v, err := w.view(ctx, g, false)
		if err != nil {
			return v, err
		}
		if s := floodgate.DonationStatus(v.Status); s.Final() || slices.Contains(statuses, s) {
			return v, nil
		}
		if !sleep(ctx, w.poll) {
			return v, fmt.Errorf("gift %s still %s: %w", g.key, v.Status, ctx.Err())
		}
	}
}

// paymentIntent is the id of the gift's latest PaymentIntent in status,
// from the sandbox's ledger ("" if none).
func (w *workload) paymentIntent(ctx context.Context, g *gift, status string) (string, error) {
	l, err := w.ledger(ctx, "?donation_id="+g.id)
	if err != nil {
		return "", err
	}
	id := ""
	for _, p := range l.PaymentIntents {
		if p.Status == status {
			id = p.ID
		}
	}
	return id, nil
}

// drainEvents waits until the sandbox has delivered every event it
// emitted to the node (which applies an event before it answers it), and
// no new event came meanwhile.
func (w *workload) drainEvents(ctx context.Context) error {
	last := int64(-1)
	for {
		l, err := w.ledger(ctx, "?summary=true")
		if err != nil {
			return err
		}
		c := l.Counts
		if c.WebhooksPending == 0 && c.WebhookEvents == c.WebhooksDelivered+c.WebhooksDropped && c.Events == last {
			return nil
		}
		last = c.Events
		if !sleep(ctx, w.poll) {
			return fmt.Errorf("webhooks never drained (%+v): %w", c, ctx.Err())
		}
	}
}

// sleep waits d on the system clock unless ctx ends first; it reports
// whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	return floodgate.Sleep(ctx, floodgate.SystemClock{}, d)
}
