package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/sandbox"
)

// The tests in this file are the acceptance scenario of "Keep charging
// through a provider incident": a backlog charged against a provider that
// stores a 500 under the key for some creates (nothing charged) and loses
// the answer of others (charged), at a provider rate of 400/s and a global
// rate of 1000/s. Their verdicts rest on counts: every gift charged exactly
// once, every unknown outcome resolved, provider requests per gift, and
// lookups per unknown outcome as unknowns grow. Times are only reported.
//
// They were written first, against the reconciler that listed every
// PaymentIntent created in a key's lifetime ±2 minutes for each unknown
// outcome, and failed on it: 2.20 provider requests per gift with 8,000
// gifts, most never settled within the deadline (BENCHMARKS.md, Unknown
// outcomes).

const (
	// unknownsProviderRate and unknownsGlobalRate are the scenario's
	// FLOODGATE_PROVIDER_RATE and FLOODGATE_PROVIDER_GLOBAL_RATE; the
	// sandbox refuses above the global one, as the account would.
	unknownsProviderRate = 400
	unknownsGlobalRate   = 1000
	// unknownsDefaultGifts is the backlog when FLOODGATE_SWEEP_GIFTS is
	// not set: large enough that a sweep's pages can be shared by many
	// unknowns and that 1% of it is about ten stored 500s (the sandbox's
	// seed is fixed), small enough for `go test -race` on two busy cores
	// within CI's budget (four runs of it; under the race detector the
	// node settles 40-100 gifts a second there, not 400). The issue's
	// 8,000: FLOODGATE_SWEEP_GIFTS=8000.
	unknownsDefaultGifts = 2000
	// unknownsMaxRequestsPerGift is the acceptance bound.
	unknownsMaxRequestsPerGift = 1.5
	// unknownsWebhookSecret signs the sandbox's webhooks when they are
	// delivered.
	unknownsWebhookSecret = "whsec_unknown_outcomes_0123456789abcdef"
)

// skipAcceptance skips the test in -short: each run charges a backlog of
// thousands of gifts.
func skipAcceptance(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("acceptance scenario: not in -short")
	}
}

// unknownsGifts is the backlog size: FLOODGATE_SWEEP_GIFTS, or
// unknownsDefaultGifts.
func unknownsGifts(tb testing.TB) int {
	tb.Helper()
	v := os.Getenv("FLOODGATE_SWEEP_GIFTS")
	if v == "" {
		return unknownsDefaultGifts
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		tb.Fatalf("FLOODGATE_SWEEP_GIFTS=%q: want a whole number of at least 100", v)
	}
	return n
}

// unknownsScenario is one run: a backlog of gifts (pm_card_visa, each of
// which must end succeeded) charged against a sandbox that fails a share
// of writes before they take effect (a 500 stored under the key) and
// loses the answer of another share after they took effect.
type unknownsScenario struct {
	gifts      int
	fail, lose float64
	// webhooks delivers the sandbox's events to the node.
	webhooks bool
	// during, when set, is called about ten times a second while the
	// backlog settles, with the sandbox, the gifts final so far and the
	// time since charging resumed (a provider incident mid-backlog).
	during func(sb *sandbox.Server, settled int64, since time.Duration)
}

func (sc unknownsScenario) String() string {
	hooks := "no webhooks"
	if sc.webhooks {
		hooks = "webhooks"
	}
	return fmt.Sprintf("%d gifts, fail %.1f%% + lose %.1f%%, %s", sc.gifts, 100*sc.fail, 100*sc.lose, hooks)
}

// deadline is how long the backlog may take to become final: the
// expected time at the provider rate, ten times over, and never less than
// three minutes (a slow machine under the race detector, the tests beside
// it) — or FLOODGATE_SWEEP_DEADLINE. Missing it is a verdict of its own,
// reported with the counts.
func (sc unknownsScenario) deadline(tb testing.TB) time.Duration {
	tb.Helper()
	if v := os.Getenv("FLOODGATE_SWEEP_DEADLINE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			tb.Fatalf("FLOODGATE_SWEEP_DEADLINE=%q: want a positive duration", v)
		}
		return d
	}
	expected := time.Duration(float64(sc.gifts) / unknownsProviderRate * float64(time.Second))
	return max(10*expected, 3*time.Minute)
}

// unknownsRun is what a scenario came to.
type unknownsRun struct {
	sc unknownsScenario
	// took is from resuming charging until every gift was final, or until
	// the deadline when they were not.
	took time.Duration
	// pending counts the gifts not final when the run ended (0 when all
	// were).
	pending int64
	// half, most and nearly are when 50%, 90% and 99% of the gifts were
	// final (0: never): the tail is where unknown outcomes wait.
	half, most, nearly time.Duration
	// totals are the campaign's, as the node's store tells them.
	totals floodgate.Totals
	ledger sandbox.Ledger
}

// providerRequests are the sandbox's API requests by kind.
type providerRequests struct {
	total, refused                     int64 // refused: answered 429
	creates, confirms, retrieves, list int64
	events                             int64 // GET /v1/events pages
	other                              int64 // cancels, payment methods, refunds
}

// lookups are the requests spent finding out what became of a charge.
func (p providerRequests) lookups() int64 { return p.retrieves + p.list + p.events }

func (r unknownsRun) requests() providerRequests {
	c := r.ledger.Counts
	p := providerRequests{total: c.Requests, refused: c.RateLimited}
	for ep, n := range c.ByEndpoint {
		switch ep {
		case "POST /v1/payment_intents":
			p.creates += n
		case "POST /v1/payment_intents/{id}/confirm":
			p.confirms += n
		case "GET /v1/payment_intents/{id}":
			p.retrieves += n
		case "GET /v1/payment_intents":
			p.list += n
		case "GET /v1/events":
			p.events += n
		default:
			p.other += n
		}
	}
	return p
}

// settled counts the gifts final when the run ended.
func (r unknownsRun) settled() int64 { return int64(r.sc.gifts) - r.pending }

// perGift is the provider requests per gift final: per gift of the
// backlog when every one is, and, of a run cut off at its deadline, per
// gift it finished (the requests for the rest were already spent).
func (r unknownsRun) perGift() float64 {
	return float64(r.requests().total) / float64(max(r.settled(), 1))
}

// unknowns counts the unknown outcomes the provider caused: the 500s it
// stored under a key (nothing charged; a resend replays the 500).
func (r unknownsRun) unknowns() int64 { return r.ledger.Counts.InjectedFailures }

// lookupsPerUnknown is the lookup requests spent per stored 500.
func (r unknownsRun) lookupsPerUnknown() float64 {
	return float64(r.requests().lookups()) / float64(max(r.unknowns(), 1))
}

func (r unknownsRun) String() string {
	p, c := r.requests(), r.ledger.Counts
	state := "all final"
	if r.pending > 0 {
		state = fmt.Sprintf("%d of %d NOT final", r.pending, r.sc.gifts)
	}
	return fmt.Sprintf("%s: %s after %v (%.1f gifts/s settled; 50%%/90%%/99%% final at %v/%v/%v); provider requests %d = %.2f per gift final "+
		"(creates %d, confirms %d, retrieves %d, list pages %d, events pages %d, other %d; 429s %d); "+
		"stored 500s %d, lost answers %d, replays %d; lookups %d = %.1f per stored 500; webhooks delivered %d",
		r.sc, state, r.took.Round(time.Millisecond), float64(r.settled())/r.took.Seconds(),
		r.half.Round(100*time.Millisecond), r.most.Round(100*time.Millisecond), r.nearly.Round(100*time.Millisecond), p.total, r.perGift(),
		p.creates, p.confirms, p.retrieves, p.list, p.events, p.other, p.refused,
		c.InjectedFailures, c.LostAnswers, c.Replays, p.lookups(), r.lookupsPerUnknown(), c.WebhooksDelivered)
}

// runUnknowns starts a node whose provider is a sandbox of its own (on a
// separate listener, as a Stripe account would be: its webhooks reach the
// node only when the scenario asks), fills the line with the backlog while
// charging is paused, resumes, and waits until every gift is final or the
// deadline passes.
func runUnknowns(tb testing.TB, sc unknownsScenario) unknownsRun {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	// Registered before the node, so that it runs after the node stopped:
	// the provider outlives its client.
	var (
		sb     *sandbox.Server
		srv    *http.Server
		served = make(chan struct{})
	)
	tb.Cleanup(func() {
		if srv == nil {
			_ = ln.Close()
			return
		}
		_ = srv.Close()
		<-served
		_ = sb.Close()
	})
	m := startMain(tb, func(c *config.Config) {
		c.StripeAPIBase = "http://" + ln.Addr().String()
		c.ProviderRate, c.ProviderGlobalRate = unknownsProviderRate, unknownsGlobalRate
		if sc.webhooks {
			c.StripeWebhookSecret = unknownsWebhookSecret
		}
	})
	opts := sandbox.Options{
		RateLimit: unknownsGlobalRate, FailRate: sc.fail, LoseRate: sc.lose, Seed: 9,
		// Every event of the backlog fits in the queue: a dropped event
		// is not what this scenario is about.
		WebhookQueue: max(sandbox.DefaultWebhookQueue, 4*sc.gifts),
	}
	if sc.webhooks {
		opts.WebhookURL, opts.WebhookSecret = m.URL()+"/v1/webhooks/stripe", unknownsWebhookSecret
	}
	sb, err = sandbox.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := sb.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	srv = &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("sandbox server: %v", err)
		}
	}()

	ctx := context.Background()
	if err := m.Control.Pause(ctx, true); err != nil {
		tb.Fatal(err)
	}
	fillBacklog(tb, m, sc.gifts)
	run := unknownsRun{sc: sc}
	deadline := sc.deadline(tb)
	if err := m.Control.Pause(ctx, false); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	for {
		tot, err := m.Store.Totals(ctx, "demo")
		if err != nil {
			tb.Fatal(err)
		}
		run.totals, run.pending = *tot, tot.PendingCount
		run.took = time.Since(start)
		for _, ms := range []struct {
			share float64
			at    *time.Duration
		}{{0.5, &run.half}, {0.9, &run.most}, {0.99, &run.nearly}} {
			if *ms.at == 0 && float64(run.settled()) >= ms.share*float64(sc.gifts) {
				*ms.at = run.took
			}
		}
		if run.pending == 0 || run.took > deadline {
			break
		}
		if sc.during != nil {
			sc.during(sb, run.settled(), run.took)
		}
		time.Sleep(100 * time.Millisecond)
	}
	run.ledger = sb.Ledger()
	tb.Log(run)
	return run
}

// checkChargedOnce fails tb unless the ledger shows every gift charged
// exactly once and the node agrees: one succeeded PaymentIntent for each
// of the backlog's gifts, none for two, none without a gift, and what the
// provider took is what the campaign raised. Gifts still pending at the
// deadline are named as such (their charge may yet come), but a double
// charge is a failure whatever the state.
//
// (The scenario's gifts all use pm_card_visa: a gift final but not
// succeeded was failed by floodgate, and is counted here as not charged.)
func checkChargedOnce(tb testing.TB, r unknownsRun) {
	tb.Helper()
	l := r.ledger
	succeeded := map[string]int{}
	var amount int64
	for _, pi := range l.PaymentIntents {
		if pi.Status != "succeeded" {
			continue
		}
		succeeded[pi.DonationID]++
		amount += pi.Amount
	}
	once, twice := 0, 0
	for did, n := range succeeded {
		switch {
		case did == "":
			tb.Errorf("%d succeeded PaymentIntents name no gift", n)
		case n == 1:
			once++
		default:
			twice++
		}
	}
	if twice > 0 || len(l.ChargedTwice) > 0 || l.Counts.ChargedTwice > 0 {
		tb.Errorf("charged twice: %d gifts (ledger: %v)", twice, l.ChargedTwice[:min(len(l.ChargedTwice), 10)])
	}
	if r.pending > 0 {
		tb.Errorf("%d of %d gifts still not final after %v: unknown outcomes not resolved (%d charged once at the provider, %d succeeded at the node)",
			r.pending, r.sc.gifts, r.took.Round(time.Second), once, r.totals.Donations)
		return
	}
	if once != r.sc.gifts || r.totals.Donations != int64(once) || r.totals.Raised != amount {
		tb.Errorf("%d of %d gifts charged exactly once at the provider, for %d; the campaign raised %d in %d donations",
			once, r.sc.gifts, amount, r.totals.Raised, r.totals.Donations)
	}
}

// checkRequestsPerGift fails tb when the run spent more than the
// acceptance bound of provider requests per gift.
func checkRequestsPerGift(tb testing.TB, r unknownsRun) {
	tb.Helper()
	if g := r.perGift(); g > unknownsMaxRequestsPerGift {
		p := r.requests()
		tb.Errorf("%.2f provider requests per gift, want at most %.1f (%d list pages, %d events pages, %d retrieves for %d stored 500s)",
			g, unknownsMaxRequestsPerGift, p.list, p.events, p.retrieves, r.unknowns())
	}
}

// TestUnknownOutcomesAtTheProviderRate is the scenario: 5% of
// creates answered with a stored 500 (nothing charged), 5% charged with
// the answer lost, provider rate 400/s, global 1000/s, a backlog charged
// at once. With no webhooks delivered the sweeps alone must resolve every
// unknown outcome; with webhooks, the events settle what they can and the
// sweeps the rest. Either way: every gift charged exactly once, every
// unknown resolved, at most 1.5 provider requests per gift. The lookups
// with and without webhooks are logged side by side. (A stored 500
// charged nothing, so no event comes for it: in this scenario webhooks
// cannot spare the sweeps that prove absence, and "fewer" is reported,
// not asserted.)
func TestUnknownOutcomesAtTheProviderRate(t *testing.T) {
	skipAcceptance(t)
	n := unknownsGifts(t)
	var runs []unknownsRun
	for _, hooks := range []bool{false, true} {
		name := "sweeps alone"
		if hooks {
			name = "with webhooks"
		}
		t.Run(name, func(t *testing.T) {
			r := runUnknowns(t, unknownsScenario{gifts: n, fail: 0.05, lose: 0.05, webhooks: hooks})
			runs = append(runs, r)
			checkChargedOnce(t, r)
			checkRequestsPerGift(t, r)
		})
	}
	if len(runs) == 2 {
		t.Logf("lookups without webhooks %d (%d list pages, %d events pages, %d retrieves); with webhooks %d (%d, %d, %d; %d webhooks delivered)",
			runs[0].requests().lookups(), runs[0].requests().list, runs[0].requests().events, runs[0].requests().retrieves,
			runs[1].requests().lookups(), runs[1].requests().list, runs[1].requests().events, runs[1].requests().retrieves,
			runs[1].ledger.Counts.WebhooksDelivered)
	}
}

// TestLookupsPerUnknownFallAsUnknownsRise: the cost of an unknown outcome
// is shared. With ten times the unknown outcomes (1% of writes failed or
// lost, then 10%), a sweep's pages cover ten times as many of them, so the
// lookup requests per stored 500 must fall, at least by half, both runs
// having finished. (Looked up one by one, as today, each unknown pays for
// its own pages whatever the others do: the ratio stays near 1.)
func TestLookupsPerUnknownFallAsUnknownsRise(t *testing.T) {
	skipAcceptance(t)
	n := unknownsGifts(t)
	low := runUnknowns(t, unknownsScenario{gifts: n, fail: 0.005, lose: 0.005})
	checkChargedOnce(t, low)
	high := runUnknowns(t, unknownsScenario{gifts: n, fail: 0.05, lose: 0.05})
	checkChargedOnce(t, high)
	if low.unknowns() < 5 {
		t.Fatalf("only %d stored 500s at 1%%: too few to compare; raise FLOODGATE_SWEEP_GIFTS", low.unknowns())
	}
	t.Logf("lookups per stored 500: %.1f at 1%% (%d lookups, %d stored 500s), %.1f at 10%% (%d lookups, %d stored 500s)",
		low.lookupsPerUnknown(), low.requests().lookups(), low.unknowns(),
		high.lookupsPerUnknown(), high.requests().lookups(), high.unknowns())
	if low.pending > 0 || high.pending > 0 {
		// An unknown counted before its lookups were spent, in a run cut
		// off early, would make any cost look shared.
		t.Fatalf("lookups per stored 500 cannot be compared: a run did not finish")
	}
	if high.lookupsPerUnknown() > low.lookupsPerUnknown()/2 {
		t.Errorf("lookups per stored 500 went from %.1f at 1%% to %.1f at 10%%: want them at least halved (the cost shared)",
			low.lookupsPerUnknown(), high.lookupsPerUnknown())
	}
}

// TestUnknownOutcomeCost is not a test but BENCHMARKS.md's table: the
// settle rate and provider requests per gift at 0%, 1%, 10% and 50% unknown
// outcomes (half stored 500s, half lost answers), no webhooks, each run to
// the end or to its deadline. It runs only with FLOODGATE_SWEEP_BENCH=1
// and never fails on the figures:
//
//	FLOODGATE_SWEEP_BENCH=1 go test -count=1 -run TestUnknownOutcomeCost -v -timeout 60m ./internal/cli/
func TestUnknownOutcomeCost(t *testing.T) {
	if os.Getenv("FLOODGATE_SWEEP_BENCH") != "1" {
		t.Skip("the BENCHMARKS.md table: set FLOODGATE_SWEEP_BENCH=1 to run")
	}
	n := unknownsGifts(t)
	var rows []string
	for _, pct := range []float64{0, 1, 10, 50} {
		t.Run(fmt.Sprintf("%g%%", pct), func(t *testing.T) {
			r := runUnknowns(t, unknownsScenario{gifts: n, fail: pct / 200, lose: pct / 200})
			p := r.requests()
			rows = append(rows, fmt.Sprintf("| %g%% | %d / %d | %v | %.1f | %.2f | %d | %d | %d | %d |",
				pct, r.settled(), n, r.took.Round(100*time.Millisecond), float64(r.settled())/r.took.Seconds(), r.perGift(),
				p.list, p.retrieves, p.events, r.unknowns()))
		})
	}
	t.Log("\n| unknown outcomes | final / gifts | time | settled/s | provider requests per gift final | list pages | retrieves | events pages | stored 500s |\n" +
		"|---|---|---|---|---|---|---|---|---|\n" + strings.Join(rows, "\n"))
}

// TestProviderIncident: half of all creates answer a stored 500 for 30
// seconds in the middle of a backlog, then the provider recovers. Every
// unknown outcome is resolved and nothing is charged twice; the lookups
// spent and how soon charging is back at full rate after the recovery are
// logged for BENCHMARKS.md (times are not verdicts).
func TestProviderIncident(t *testing.T) {
	skipAcceptance(t)
	// The backlog must outlast the incident: at 400 gifts a second (no
	// race detector) 12,000 gifts take 30 s with no incident; under the
	// race detector the node settles 100-170 a second, and 4,000 take as
	// long.
	n := max(unknownsGifts(t), 12000)
	if raceDetector {
		n = max(unknownsGifts(t), 4000)
	}
	const incident = 30 * time.Second
	var (
		began, ended     time.Duration
		settledAtRecover int64
		rates            []string
		last             struct {
			settled int64
			at      time.Duration
		}
	)
	setFail := func(sb *sandbox.Server, rate float64) {
		cfg := sb.Config()
		cfg.FailRate = rate
		if err := sb.SetConfig(cfg); err != nil {
			t.Fatal(err)
		}
	}
	r := runUnknowns(t, unknownsScenario{gifts: n, during: func(sb *sandbox.Server, settled int64, since time.Duration) {
		switch {
		case began == 0 && settled >= int64(n)/5:
			began = since
			setFail(sb, 0.5)
		case began != 0 && ended == 0 && since-began >= incident:
			ended, settledAtRecover = since, settled
			setFail(sb, 0)
		}
		if ended != 0 && since-last.at >= time.Second {
			if last.at != 0 {
				rates = append(rates, fmt.Sprintf("%.0f", float64(settled-last.settled)/(since-last.at).Seconds()))
			}
			last.settled, last.at = settled, since
		}
	}})
	checkChargedOnce(t, r)
	if began == 0 || ended == 0 {
		t.Fatalf("the incident did not happen within the backlog (began %v, ended %v): raise FLOODGATE_SWEEP_GIFTS", began, ended)
	}
	if r.unknowns() < 10 {
		t.Fatalf("only %d stored 500s during the incident: it proved nothing", r.unknowns())
	}
	t.Logf("incident from %v to %v; %d of %d gifts final at the recovery; %d stored 500s; lookups %d (%d list pages) = %.2f per stored 500; "+
		"gifts settled per second after the recovery: %s; all final %v after the recovery",
		began.Round(100*time.Millisecond), ended.Round(100*time.Millisecond), settledAtRecover, n, r.unknowns(),
		r.requests().lookups(), r.requests().list, r.lookupsPerUnknown(), strings.Join(rates, " "), (r.took - ended).Round(100*time.Millisecond))
}
