package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sandbox"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// options configure one run.
type options struct {
	Bin, UpgradeBin string
	Seed            uint64
	Gifts           int
	Rate            float64
	ProviderRate    float64
	ActionTimeout   time.Duration
	Timeout         time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Result is what a run came to, normalized so that two runs compare:
// gifts are named by their idempotency key, ids and times are left out,
// every list is in a fixed order and maps are written sorted.
type Result struct {
	Seed  uint64 `json:"seed"`
	Count int    `json:"gifts_count"`
	// Outcomes counts the gifts of each scenario by the status they ended
	// in.
	Outcomes map[string]map[string]int `json:"outcomes"`
	// Totals is the campaign's totals as GET .../totals answers them,
	// without updated_at.
	Totals map[string]any   `json:"totals"`
	Ledger LedgerCounts     `json:"ledger"`
	Gifts  map[string]*Gift `json:"gifts"`
	// Unexpected lists the gifts that did not end as their scenario
	// says, and anything charged twice.
	Unexpected []string `json:"unexpected,omitempty"`
}

// LedgerCounts are the sandbox's counts that the workload decides (not
// the requests, 429s or replays, which depend on timing).
type LedgerCounts struct {
	PaymentIntents int   `json:"payment_intents"`
	Succeeded      int   `json:"succeeded"`
	Canceled       int   `json:"canceled"`
	RequiresAction int   `json:"requires_action"`
	Donations      int   `json:"donations"`
	ChargedTwice   int   `json:"charged_twice"`
	Events         int64 `json:"events"`
}

// Gift is one gift's whole story.
type Gift struct {
	Scenario string `json:"scenario"`
	Card     string `json:"card"`
	// View is its public view at the end (GET /v1/donations/{id}).
	View View `json:"view"`
	// Answers are the workload's later requests about it and their
	// answers: replays of its key, cancels, a new card, 3-D Secure,
	// refunds and disputes.
	Answers []string `json:"answers,omitempty"`
	// Payments are its PaymentIntents in the sandbox's ledger, oldest
	// first.
	Payments []Payment `json:"payments"`
	// History is its history as the store recorded it, oldest first.
	History []Line `json:"history"`
}

// View is the public view of a gift.
type View struct {
	Status      string `json:"status"`
	FailureCode string `json:"failure_code,omitempty"`
	Amount      int64  `json:"amount"`
	Currency    string `json:"currency"`
}

// Payment is one PaymentIntent of a gift.
type Payment struct {
	Status         string `json:"status"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	PaymentMethod  string `json:"payment_method"`
	AmountRefunded int64  `json:"amount_refunded,omitempty"`
	Disputed       bool   `json:"disputed,omitempty"`
	Attempts       int    `json:"attempts"`
}

// Line is one history line as compared: its status and failure code, and
// the event when the status alone does not say what happened (a donor's
// cancel, a new payment method, a refund or a dispute). Which part of the
// node reported an outcome (the dispatcher, a webhook, the expirer) is left
// out: when two of them learn the same outcome, whichever records it first
// writes the line, and that order is a race of the run, not a behaviour.
type Line struct {
	Status string `json:"status"`
	Code   string `json:"code,omitempty"`
	Event  string `json:"event,omitempty"`
}

// reporter matches the notes that only say who reported an outcome.
var reporter = regexp.MustCompile(`^(|action timeout|canceled at the provider( \(webhook\))?|webhook [a-z_.]+)$`)

// anyID matches the provider's and floodgate's ids in a note.
var anyID = regexp.MustCompile(`\b(pi|ch|re|dp|don|ord|pm)_[A-Za-z0-9]+`)

func lineOf(c floodgate.StatusChange) Line {
	l := Line{Status: string(c.Status), Code: c.FailureCode}
	if !reporter.MatchString(c.Note) {
		l.Event = anyID.ReplaceAllString(c.Note, "<id>")
	}
	return l
}

// run makes one rig from o.Bin, drives the workload through it and
// collects the result.
func run(ctx context.Context, o options) (*Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	gifts, err := plan(o.Seed, o.Gifts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "floodgate-parity-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r, err := startRig(ctx, o, dir)
	if err != nil {
		return nil, err
	}
	defer r.close()
	fmt.Fprintf(o.Log, "parity: %s: node %s, sandbox %s, %d gifts, seed %d\n", o.Bin, r.nodeURL, r.sandboxURL, o.Gifts, o.Seed)
	w := &workload{r: r, o: o, poll: 100 * time.Millisecond}
	t0 := time.Now()
	if err := w.drive(ctx, gifts); err != nil {
		return nil, fmt.Errorf("%w\nnode:\n%s", err, r.node.tail())
	}
	fmt.Fprintf(o.Log, "parity: every gift final after %v\n", time.Since(t0).Round(time.Millisecond))

	res := &Result{Seed: o.Seed, Count: len(gifts), Outcomes: map[string]map[string]int{}, Gifts: map[string]*Gift{}}
	for _, g := range gifts {
		out := &Gift{Scenario: g.sc.name, Card: g.card, Answers: g.answers, Payments: []Payment{}, History: []Line{}}
		res.Gifts[g.key] = out
		if g.id == "" {
			continue
		}
		v, err := w.view(ctx, g, false)
		if err != nil {
			return nil, err
		}
		out.View = View{Status: v.Status, Amount: v.Amount, Currency: v.Currency}
		if v.FailureCode != nil {
			out.View.FailureCode = *v.FailureCode
		}
	}
	if res.Totals, err = w.totals(ctx); err != nil {
		return nil, err
	}
	l, err := w.ledger(ctx, "")
	if err != nil {
		return nil, err
	}
	res.Ledger = LedgerCounts{PaymentIntents: l.Counts.PaymentIntents, Succeeded: l.Counts.Succeeded, Canceled: l.Counts.Canceled,
		RequiresAction: l.Counts.RequiresAction, Donations: l.Counts.Donations, ChargedTwice: l.Counts.ChargedTwice, Events: l.Counts.Events}
	fmt.Fprintf(o.Log, "parity: the sandbox answered %d API requests, %d of them 429\n", l.Counts.Requests, l.Counts.RateLimited)
	byID := map[string]*gift{}
	for _, g := range gifts {
		if g.id != "" {
			byID[g.id] = g
		}
	}
	for _, p := range l.PaymentIntents {
		g := byID[p.DonationID]
		if g == nil {
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("a PaymentIntent for no gift of the workload (%s, %s)", p.Status, p.PaymentMethod))
			continue
		}
		out := res.Gifts[g.key]
		out.Payments = append(out.Payments, Payment{Status: p.Status, Amount: p.Amount, Currency: p.Currency, PaymentMethod: p.PaymentMethod,
			AmountRefunded: p.AmountRefunded, Disputed: p.Disputed, Attempts: p.Attempts})
	}
	for _, id := range l.ChargedTwice {
		res.Unexpected = append(res.Unexpected, fmt.Sprintf("charged twice: %s", keyOf(byID, id)))
	}

	if err := r.stopNode(); err != nil {
		return nil, err
	}
	if o.UpgradeBin != "" {
		if err := r.upgrade(ctx, o, o.UpgradeBin); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "parity: the store was migrated by %s\n", o.UpgradeBin)
	}
	if err := readHistory(ctx, r.storePath(), gifts, res); err != nil {
		return nil, err
	}

	for _, g := range gifts {
		out := res.Gifts[g.key]
		if res.Outcomes[g.sc.name] == nil {
			res.Outcomes[g.sc.name] = map[string]int{}
		}
		res.Outcomes[g.sc.name][out.View.Status]++
		if out.View.Status != string(g.sc.expect) {
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s (%s) ended %q, not %s", g.key, g.sc.name, out.View.Status, g.sc.expect))
		}
	}
	return res, nil
}

// readHistory reads every gift's history from the stopped node's store
// with this repository's SQLite engine; the schema must be this one's.
func readHistory(ctx context.Context, path string, gifts []*gift, res *Result) error {
	s, err := sqlite.OpenReader(ctx, path, 2)
	if err != nil {
		return fmt.Errorf("%w (a store of another schema: give --upgrade-bin a binary whose serve migrates it)", err)
	}
	defer s.Close()
	for _, g := range gifts {
		if g.id == "" {
			continue
		}
		h, err := s.History(ctx, g.id)
		if err != nil {
			return fmt.Errorf("history of %s: %w", g.key, err)
		}
		out := res.Gifts[g.key]
		for _, c := range h {
			out.History = append(out.History, lineOf(c))
		}
	}
	return nil
}

func keyOf(byID map[string]*gift, id string) string {
	if g := byID[id]; g != nil {
		return g.key
	}
	return id
}

// ledger reads the sandbox's ledger; query narrows it (?donation_id=,
// ?summary=true).
func (w *workload) ledger(ctx context.Context, query string) (*sandbox.Ledger, error) {
	a, err := w.r.do(ctx, http.MethodGet, w.r.sandboxURL+"/_sandbox/ledger"+query, nil)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("ledger: %d %s", a.status, a.body)
	}
	var l sandbox.Ledger
	return &l, json.Unmarshal(a.body, &l)
}

// totals reads the campaign's totals, every field but updated_at.
func (w *workload) totals(ctx context.Context) (map[string]any, error) {
	a, err := w.r.do(ctx, http.MethodGet, w.r.nodeURL+"/v1/campaigns/"+campaign+"/totals", nil)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("totals: %d %s", a.status, a.body)
	}
	t := map[string]any{}
	if err := jsonUnmarshal(a.body, &t); err != nil {
		return nil, err
	}
	delete(t, "updated_at")
	return t, nil
}

// jsonUnmarshal decodes numbers as json.Number, so that they are written
// back exactly as they were read.
func jsonUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// Summary is a line per scenario: how many gifts, and how they ended.
func (r *Result) Summary() string {
	var b strings.Builder
	for _, s := range scenarios {
		fmt.Fprintf(&b, "%-24s %v\n", s.name, r.Outcomes[s.name])
	}
	return b.String()
}
