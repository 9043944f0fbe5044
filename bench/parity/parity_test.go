package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSameSeedSameResult runs the workload twice on the current binary
// with the same seed: the two results must be byte for byte the same, or
// the tool could not tell a change of behaviour from its own noise. It
// also holds the workload to what it claims to cover: every scenario
// driven and ending as it should, every state and event present.
func TestSameSeedSameResult(t *testing.T) {
	if testing.Short() {
		t.Skip("parity: starts floodgate processes; not in -short")
	}
	bin := filepath.Join(t.TempDir(), "floodgate")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/floodgate/floodgate/cmd/floodgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Two gifts a scenario: few enough to stay short, enough that the
	// weighted draw adds some of its own.
	o := options{Bin: bin, Seed: 42, Gifts: 2 * len(scenarios), Rate: 20, ProviderRate: 15, ActionTimeout: 4 * time.Second, Log: testLog{t}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The two runs go at once: each has its own processes, ports and
	// store, and whatever one does to the other's timing must not show.
	var (
		outs [2]string
		res  [2]*Result
		errs [2]error
		wg   sync.WaitGroup
	)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = run(ctx, o)
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i+1, errs[i])
		}
		b, err := encode(res[i])
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = string(b)
	}
	if outs[0] != outs[1] {
		t.Fatalf("two runs with the same seed differ:\n%s", firstDifference(outs[0], outs[1]))
	}
	checkCoverage(t, res[0])
}

// checkCoverage fails unless every scenario was driven and ended as it
// should, and every state and event the workload promises is in the
// history.
func checkCoverage(t *testing.T, r *Result) {
	t.Helper()
	if len(r.Unexpected) > 0 {
		t.Errorf("unexpected: %q", r.Unexpected)
	}
	if len(r.Gifts) != r.Count {
		t.Errorf("%d gifts in the result, %d made", len(r.Gifts), r.Count)
	}
	scenarioGifts := map[string]int{}
	for _, g := range r.Gifts {
		scenarioGifts[g.Scenario]++
	}
	for _, s := range scenarios {
		n := scenarioGifts[s.name]
		if n == 0 || r.Outcomes[s.name][string(s.expect)] != n {
			t.Errorf("scenario %s: %d gifts, outcomes %v; want all %s", s.name, n, r.Outcomes[s.name], s.expect)
		}
	}
	// What each kind of gift must show, counted over the result.
	type want struct {
		what      string
		scenarios []string
		has       func(*Gift) bool
	}
	inHistory := func(status, event string) func(*Gift) bool {
		return func(g *Gift) bool {
			for _, l := range g.History {
				if l.Status == status && strings.HasPrefix(l.Event, event) {
					return true
				}
			}
			return false
		}
	}
	answered := func(prefix string) func(*Gift) bool {
		return func(g *Gift) bool {
			for _, a := range g.Answers {
				if strings.HasPrefix(a, prefix) {
					return true
				}
			}
			return false
		}
	}
	for _, w := range []want{
		{"3-D Secure asked", []string{"3ds_approved", "3ds_approved_declined", "3ds_failed", "3ds_abandoned"}, inHistory("requires_action", "")},
		{"a challenge answered", []string{"3ds_approved", "3ds_approved_declined", "3ds_failed"}, answered("3ds ")},
		{"canceled by the donor", []string{"cancel"}, inHistory("canceled", "canceled by the donor")},
		{"a late cancel refused", []string{"cancel_too_late"}, answered("cancel: 409 ")},
		{"a new payment method", []string{"new_card", "new_card_declined"}, inHistory("accepted", "new payment method")},
		{"a refund recorded", []string{"refund", "partial_refund"}, inHistory("succeeded", "refund: ")},
		{"a dispute recorded", []string{"dispute", "dispute_card"}, inHistory("succeeded", "dispute: ")},
	} {
		want, got := 0, 0
		for _, g := range r.Gifts {
			for _, s := range w.scenarios {
				if g.Scenario == s {
					want++
					if w.has(g) {
						got++
					}
				}
			}
		}
		if want == 0 || got != want {
			t.Errorf("%s: %d of %d gifts", w.what, got, want)
		}
	}
	codes := map[string]bool{}
	replays, mismatches, payments := 0, 0, 0
	for _, g := range r.Gifts {
		codes[g.View.FailureCode] = true
		for _, a := range g.Answers {
			if strings.HasPrefix(a, "replay, same body: 202 the same id") {
				replays++
			}
			if a == "replay, other body: 422 idempotency_mismatch" {
				mismatches++
			}
		}
		payments += len(g.Payments)
	}
	for _, c := range []string{"card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "authentication_failed"} {
		if !codes[c] {
			t.Errorf("no gift failed with %s", c)
		}
	}
	if replays == 0 || replays != mismatches {
		t.Errorf("%d keys replayed with the same body and answered the same id, %d with another body answered 422", replays, mismatches)
	}
	if payments != r.Ledger.PaymentIntents || r.Ledger.ChargedTwice != 0 {
		t.Errorf("%d PaymentIntents on gifts, ledger %+v", payments, r.Ledger)
	}
}

// firstDifference shows where two results first differ, with the gift
// it is in.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < min(len(al), len(bl)); i++ {
		if al[i] == bl[i] {
			continue
		}
		where := ""
		for j := i; j >= 0; j-- {
			if strings.Contains(al[j], `"parity-`) {
				where = strings.TrimSpace(al[j])
				break
			}
		}
		return fmt.Sprintf("line %d, in %s\n- %s\n+ %s", i+1, where, al[i], bl[i])
	}
	return fmt.Sprintf("one result is longer: %d and %d lines", len(al), len(bl))
}

// testLog writes the run's progress lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
