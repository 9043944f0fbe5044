package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fault matrix's rig: one standalone sandbox (the provider, whose
// ledger is the proof), optionally a Toxiproxy in front of it, and one
// floodgate server that is SIGKILLed and restarted on the same port and
// data directory. Every case builds a rig of its own, so that the ledger's
// counts are the case's alone.

// faultRate is floodgate's provider rate (PaymentIntent and global) in
// every case; the sandbox's own limit is set above it unless a case wants
// 429s.
const faultRate = "100"

// faultGift is one donation a case sends, and what became of it.
type faultGift struct {
	key    string
	body   string
	amount int64
	card   string
	ok     bool // the card succeeds

	// Written by the sender that owns the gift, read after it is done.
	id      string // from the first 202
	tries   int    // POSTs until the 202
	problem string // why it was never accepted
}

// faultGifts makes n gifts: three cards in four succeed, the fourth is
// declined, so that "none charged for the others" is checked too.
func faultGifts(prefix string, n int) []*faultGift {
	cards := []struct {
		pm string
		ok bool
	}{{"pm_card_visa", true}, {"pm_card_mastercard", true}, {"pm_card_visa", true}, {"pm_card_chargeDeclined", false}}
	gifts := make([]*faultGift, n)
	run := time.Now().UnixNano()
	for i := range gifts {
		c := cards[i%len(cards)]
		amount := int64(500 + rand.N(20)*100)
		gifts[i] = &faultGift{key: fmt.Sprintf("fault-%s-%d-%d", prefix, run, i), amount: amount, card: c.pm, ok: c.ok,
			body: fmt.Sprintf(`{"amount": %d, "currency": "eur", "email": "%s%d@example.org", "payment_method": %q}`, amount, prefix, i, c.pm)}
	}
	return gifts
}

type faultRig struct {
	t          *testing.T
	bin        string
	addr       string // floodgate's
	metrics    string // floodgate's metrics listener
	dataDir    string
	sandboxURL string // the sandbox itself: ledger and fault switches
	apiBase    string // what floodgate calls: the sandbox, or a proxy in front of it
	serveArgs  map[string]string
	server     *proc
	hc         *http.Client
}

// newFaultRig starts a sandbox with the given extra flags. The server is
// not started: a case may first put a proxy in front of the sandbox.
func newFaultRig(t *testing.T, bin string, sandboxArgs ...string) *faultRig {
	t.Helper()
	r := &faultRig{t: t, bin: bin, addr: freePort(t), metrics: freePort(t), dataDir: t.TempDir(),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		serveArgs: map[string]string{
			"--provider-rate": faultRate, "--provider-global-rate": faultRate,
			"--dispatch-workers": "64", "--dispatch-queue": "64", "--dispatch-claim": "32",
			"--provider-timeout": "5s", "--lease": "30s",
			// Every client here is 127.0.0.1, and a gift's retries count
			// as attempts: the card-testing limits would refuse them.
			"--address-limit": "0", "--email-limit": "0",
		}}
	t.Cleanup(r.hc.CloseIdleConnections)
	// No webhooks: every gift must be settled by the dispatcher itself,
	// so that a lost answer cannot be papered over by an event.
	args := append([]string{"sandbox", "--addr", freePort(t), "--log-level", "warn"}, sandboxArgs...)
	sb := start(t, t.TempDir(), nil, bin, args...)
	r.sandboxURL = "http://" + sb.await(regexp.MustCompile(`sandbox listening on http://(\S+)`), 30*time.Second)
	r.apiBase = r.sandboxURL
	return r
}

// startServer starts floodgate and waits until it is ready.
func (r *faultRig) startServer() {
	r.t.Helper()
	args := []string{"serve", "--demo", "--addr", r.addr, "--metrics-addr", r.metrics, "--data-dir", r.dataDir,
		"--stripe-api-base", r.apiBase, "--log-level", "warn"}
	names := make([]string, 0, len(r.serveArgs))
	for name := range r.serveArgs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		args = append(args, name, r.serveArgs[name])
	}
	r.server = start(r.t, r.dataDir, nil, r.bin, args...)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := r.hc.Get("http://" + r.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("server not ready:\n%s", r.server.output())
}

// kill SIGKILLs the server, first making sure that gifts are still being
// charged (a crash after the work is done proves nothing).
func (r *faultRig) kill() {
	r.t.Helper()
	tot := r.totals()
	if tot.Pending == 0 {
		r.t.Fatalf("nothing was being charged when the server was to be killed (%+v): the case proves less than it says", tot)
	}
	c := r.counts()
	r.server.kill()
	r.t.Logf("SIGKILL with %d cents pending, %d PaymentIntents in the ledger", tot.Pending, c.PaymentIntents)
}

// crash kills the server while it charges and restarts it.
func (r *faultRig) crash() {
	r.t.Helper()
	r.kill()
	r.startServer()
}

// post sends one gift once; any answer but 202 is an error.
func (r *faultRig) post(g *faultGift) (status int, id string, err error) {
	status, id, answer, err := postGift(r.hc, r.addr, g.key, g.body)
	if err == nil && status != http.StatusAccepted {
		err = fmt.Errorf("%d %s", status, answer)
	}
	return status, id, err
}

// retryable is an answer that asks the client to come back (or none).
func retryable(status int) bool {
	return status == 0 || status == http.StatusConflict || status == http.StatusTooManyRequests || status >= 500
}

// send posts the gifts in the background, rate a second in order
// (arrivals do not wait for answers), each from one of 32 clients that
// retries it with the same Idempotency-Key until it is answered 202. The
// returned channel is closed when every gift is accepted or given up.
func (r *faultRig) send(gifts []*faultGift, rate float64) <-chan struct{} {
	done := make(chan struct{})
	next := make(chan *faultGift)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range next {
				giveUp := time.Now().Add(2 * time.Minute)
				for {
					g.tries++
					status, id, err := r.post(g)
					if err == nil {
						g.id = id
						break
					}
					if !retryable(status) || time.Now().After(giveUp) {
						g.problem = err.Error()
						break
					}
					time.Sleep(time.Duration(20+rand.N(60)) * time.Millisecond)
				}
			}
		}()
	}
	go func() {
		t0 := time.Now()
		for i, g := range gifts {
			if wait := time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
			next <- g
		}
		close(next)
		wg.Wait()
		close(done)
	}()
	return done
}

// await waits for the senders; every gift must have been accepted.
func (r *faultRig) await(done <-chan struct{}, gifts []*faultGift) {
	r.t.Helper()
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		r.t.Fatal("the senders never finished")
	}
	retried := 0
	for _, g := range gifts {
		if g.id == "" {
			r.t.Fatalf("gift %s was never accepted: %s", g.key, g.problem)
		}
		if g.tries > 1 {
			retried++
		}
	}
	r.t.Logf("%d gifts accepted, %d of them after a retry with the same key", len(gifts), retried)
}

func (r *faultRig) getJSON(url string, v any) error {
	resp, err := r.hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

type faultTotals struct{ Raised, Pending, Donations int64 }

func (r *faultRig) totals() faultTotals {
	r.t.Helper()
	var tot faultTotals
	if err := r.getJSON("http://"+r.addr+"/v1/campaigns/demo/totals", &tot); err != nil {
		r.t.Fatal(err)
	}
	return tot
}

// sandboxCounts are the sandbox ledger's counts (a subset).
type sandboxCounts struct {
	PaymentIntents   int   `json:"payment_intents"`
	Succeeded        int   `json:"succeeded"`
	ChargedTwice     int   `json:"charged_twice"`
	Requests         int64 `json:"requests"`
	RateLimited      int64 `json:"rate_limited"`
	Replays          int64 `json:"idempotent_replays"`
	InjectedFailures int64 `json:"injected_failures"`
	LostAnswers      int64 `json:"lost_answers"`
	Outage           int64 `json:"outage"`
}

type sandboxLedger struct {
	PaymentIntents []struct {
		ID, Status string
		DonationID string `json:"donation_id"`
		Amount     int64
	} `json:"payment_intents"`
	ChargedTwice []string      `json:"charged_twice"`
	Counts       sandboxCounts `json:"counts"`
}

func (r *faultRig) counts() sandboxCounts {
	r.t.Helper()
	var l sandboxLedger
	if err := r.getJSON(r.sandboxURL+"/_sandbox/ledger?summary=true", &l); err != nil {
		r.t.Fatal(err)
	}
	return l.Counts
}

// configure changes the sandbox's faults at runtime.
func (r *faultRig) configure(js string) {
	r.t.Helper()
	resp, err := r.hc.Post(r.sandboxURL+"/_sandbox/config", "application/json", strings.NewReader(js))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		r.t.Fatalf("POST /_sandbox/config %s: %d %s", js, resp.StatusCode, b)
	}
}

// waitCounts polls the ledger's counts until cond holds; a double charge
// fails at once. The deadline is generous: it bounds a hang, it measures
// nothing.
func (r *faultRig) waitCounts(what string, cond func(c sandboxCounts) bool) sandboxCounts {
	r.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c := r.counts()
		if c.ChargedTwice > 0 {
			r.t.Fatalf("charged twice while waiting for %s: %+v", what, c)
		}
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("never saw %s; the ledger's counts: %+v", what, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, with a generous deadline.
func (r *faultRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("never saw %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric sums the samples of a counter in the running server's /metrics
// whose labels contain match.
func (r *faultRig) metric(name, match string) float64 {
	r.t.Helper()
	resp, err := r.hc.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if !strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			r.t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		r.t.Fatal(err)
	}
	return sum
}

// verify is the promise, checked from the outside after the faults: every
// acknowledged gift settles as its card says, answers 200, and replaying
// its key gives the same id; floodgate's totals agree; and the provider's
// own ledger shows exactly one succeeded PaymentIntent for each gift with
// a succeeding card and none for any other donation. It returns the
// ledger's counts for the case's proof that its fault happened.
func (r *faultRig) verify(gifts []*faultGift) sandboxCounts {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		tot := r.totals()
		if tot.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("still pending after 3 minutes: %+v; the ledger's counts: %+v", tot, r.counts())
		}
		time.Sleep(100 * time.Millisecond)
	}

	var wantRaised int64
	wantSucceeded := map[string]bool{}
	ours := map[string]bool{}
	for _, g := range gifts {
		ours[g.id] = true
		var d struct{ ID, Status string }
		if err := r.getJSON("http://"+r.addr+"/v1/donations/"+g.id, &d); err != nil {
			r.t.Fatalf("acknowledged gift lost: %v", err)
		}
		if (g.ok && d.Status != "succeeded") || (!g.ok && d.Status != "failed") {
			r.t.Fatalf("gift %s with %s is %s", g.id, g.card, d.Status)
		}
		if g.ok {
			wantRaised += g.amount
			wantSucceeded[g.id] = true
		}
		if _, id, err := r.post(g); err != nil || id != g.id {
			r.t.Fatalf("replaying key %s: id %q (%v), want %s", g.key, id, err, g.id)
		}
	}
	if tot := r.totals(); tot.Raised != wantRaised || tot.Donations != int64(len(wantSucceeded)) {
		r.t.Fatalf("totals raised %d in %d donations, want %d in %d", tot.Raised, tot.Donations, wantRaised, len(wantSucceeded))
	}

	var ledger sandboxLedger
	if err := r.getJSON(r.sandboxURL+"/_sandbox/ledger", &ledger); err != nil {
		r.t.Fatal(err)
	}
	if len(ledger.ChargedTwice) != 0 || ledger.Counts.ChargedTwice != 0 {
		r.t.Fatalf("charged twice: %v", ledger.ChargedTwice)
	}
	succeeded := map[string]int{}
	var charged int64
	for _, pi := range ledger.PaymentIntents {
		if !ours[pi.DonationID] {
			r.t.Fatalf("PaymentIntent %s names donation %q, which no client was answered", pi.ID, pi.DonationID)
		}
		if pi.Status != "succeeded" {
			continue
		}
		succeeded[pi.DonationID]++
		charged += pi.Amount
		if !wantSucceeded[pi.DonationID] {
			r.t.Fatalf("PaymentIntent %s charged donation %s, whose card is declined", pi.ID, pi.DonationID)
		}
	}
	for id := range wantSucceeded {
		if succeeded[id] != 1 {
			r.t.Fatalf("donation %s has %d succeeded PaymentIntents, want 1", id, succeeded[id])
		}
	}
	if charged != wantRaised {
		r.t.Fatalf("the provider charged %d, floodgate raised %d", charged, wantRaised)
	}
	c := ledger.Counts
	r.t.Logf("exactly once: %d gifts, %d charged once each, none twice; ledger %+v", len(gifts), len(succeeded), c)
	return c
}

// toxiproxyVersion is the Toxiproxy the tests are written against; the
// client package in go.mod is the same version.
const toxiproxyVersion = "v2.12.0"

// toxiproxyServer finds the Toxiproxy server binary: $FLOODGATE_TOXIPROXY_SERVER,
// toxiproxy-server on the PATH, or the `server` that `go install
// github.com/Shopify/toxiproxy/v2/cmd/server@...` leaves in GOBIN (or
// GOPATH/bin). Missing, the test fails when FLOODGATE_REQUIRE_TOXIPROXY is
// set (CI) and is skipped otherwise.
func toxiproxyServer(t *testing.T) string {
	t.Helper()
	isToxiproxy := func(path string) bool {
		out, err := exec.Command(path, "-version").CombinedOutput()
		return err == nil && strings.Contains(string(out), "toxiproxy")
	}
	var tried []string
	if p := os.Getenv("FLOODGATE_TOXIPROXY_SERVER"); p != "" {
		if isToxiproxy(p) {
			return p
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("toxiproxy-server"); err == nil && isToxiproxy(p) {
		return p
	}
	tried = append(tried, "toxiproxy-server on the PATH")
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		gobin, gopath, _ := strings.Cut(string(out), "\n") // one line each, GOBIN usually empty
		var dirs []string
		if gobin = strings.TrimSpace(gobin); gobin != "" {
			dirs = append(dirs, gobin)
		}
		for _, gp := range filepath.SplitList(strings.TrimSpace(gopath)) {
			dirs = append(dirs, filepath.Join(gp, "bin"))
		}
		for _, d := range dirs {
			p := filepath.Join(d, "server")
			if _, err := os.Stat(p); err == nil && isToxiproxy(p) {
				return p
			}
			tried = append(tried, p)
		}
	}
	msg := fmt.Sprintf("the Toxiproxy server is not installed (looked for %s); install it with\n"+
		"\tgo install github.com/Shopify/toxiproxy/v2/cmd/server@%s\n"+
		"(the binary is named `server`), or set FLOODGATE_TOXIPROXY_SERVER to its path", strings.Join(tried, ", "), toxiproxyVersion)
	if os.Getenv("FLOODGATE_REQUIRE_TOXIPROXY") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
