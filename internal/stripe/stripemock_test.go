package stripe_test

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"go/build"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
	"github.com/floodgate/floodgate/internal/stripe/stripetest"
)

// stripe-mock (github.com/stripe/stripe-mock) answers every request from
// Stripe's OpenAPI spec: it refuses, with a 400, any request whose path,
// parameters or parameter types Stripe's API would not accept, and answers
// the others with fixture objects. TestStripeMock sends it every request
// the adapter makes. The fixtures do not behave like Stripe (a confirmed
// PaymentIntent does not succeed, a list holds one canned object), so the
// test checks only that each request is accepted and that the adapter
// decodes the answer; behaviour is the contract suite's business.
const (
	// stripeMockVersion is the stripe-mock whose spec the adapter is held
	// to; CI installs exactly this one (.ci/run).
	stripeMockVersion = "v0.203.0"
	stripeMockInstall = "go install github.com/stripe/stripe-mock@" + stripeMockVersion
	// requireStripeMock, when set, turns a missing stripe-mock from a skip
	// into a failure (CI sets it).
	requireStripeMock = "FLOODGATE_REQUIRE_STRIPE_MOCK"
)

func TestStripeMock(t *testing.T) {
	bin := findStripeMock()
	if bin == "" {
		msg := "stripe-mock not found on PATH, in $GOBIN or in $(go env GOPATH)/bin; install it with: " + stripeMockInstall
		if os.Getenv(requireStripeMock) != "" {
			t.Fatalf("%s (%s is set, so stripe-mock is required)", msg, requireStripeMock)
		}
		t.Skip(msg)
	}
	checkStripeMockVersion(t, bin)
	base := startStripeMock(t, bin)

	rec := &stripetest.Recorder{}
	c, err := fgstripe.New(fgstripe.Options{SecretKey: "sk_test_floodgateStripeMock", APIBase: base,
		HTTPClient: &http.Client{Transport: rec, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	const pi = "pi_floodgate_mock"

	// decoded checks what the adapter made of a PaymentIntent answer.
	decoded := func(t *testing.T, p *floodgate.Payment) {
		t.Helper()
		if p == nil || !strings.HasPrefix(p.ID, "pi_") || p.Status == "" || p.Currency == "" || p.Created.IsZero() {
			t.Errorf("decoded %+v", p)
		}
	}
	tests := []struct {
		name   string
		method string
		path   string
		call   func(t *testing.T) error
	}{
		{"create and confirm", "POST", "/v1/payment_intents", func(t *testing.T) error {
			p, err := c.Charge(ctx, floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_mock_1"), Amount: 2500, Currency: "eur",
				PaymentMethod: "pm_card_visa", IdempotencyKey: "don_mock_1:1"})
			if err == nil {
				decoded(t, p)
			}
			return err
		}},
		{"create and confirm with description and metadata", "POST", "/v1/payment_intents", func(t *testing.T) error {
			p, err := c.Charge(ctx, floodgate.ChargeRequest{Amount: 99_999_999, Currency: "gbp",
				PaymentMethod: "pm_card_visa", IdempotencyKey: strings.Repeat("k", 255), Description: "Gift to demo",
				Metadata: map[string]string{"campaign": "demo", "gift_aid": "true", floodgate.MetaDonation: "don_mock_2"}})
			if err == nil {
				decoded(t, p)
			}
			return err
		}},
		{"confirm again with another card", "POST", "/v1/payment_intents/" + pi + "/confirm", func(t *testing.T) error {
			p, err := c.Charge(ctx, floodgate.ChargeRequest{PaymentIntentID: pi, PaymentMethod: "pm_card_mastercard",
				IdempotencyKey: "don_mock_1:2"})
			if err == nil {
				decoded(t, p)
			}
			return err
		}},
		{"retrieve", "GET", "/v1/payment_intents/" + pi, func(t *testing.T) error {
			p, err := c.Payment(ctx, pi)
			if err == nil {
				decoded(t, p)
			}
			return err
		}},
		{"list a creation window", "GET", "/v1/payment_intents", func(t *testing.T) error {
			page, err := c.FindPayments(ctx, floodgate.PaymentQuery{CreatedFrom: now.Add(-time.Hour), CreatedTo: now})
			if err == nil {
				if len(page.Payments) == 0 || page.Last == "" {
					t.Errorf("page %+v", page)
				}
				for _, p := range page.Payments {
					decoded(t, p)
				}
			}
			return err
		}},
		{"list the next page", "GET", "/v1/payment_intents", func(t *testing.T) error {
			_, err := c.FindPayments(ctx, floodgate.PaymentQuery{CreatedFrom: now.Add(-time.Hour), CreatedTo: now, After: pi, Metadata: floodgate.DonationLookup("don_mock_1")})
			return err
		}},
		{"list from a time on", "GET", "/v1/payment_intents", func(t *testing.T) error {
			_, err := c.FindPayments(ctx, floodgate.PaymentQuery{CreatedFrom: now.Add(-time.Hour)})
			return err
		}},
		{"list everything", "GET", "/v1/payment_intents", func(t *testing.T) error {
			_, err := c.FindPayments(ctx, floodgate.PaymentQuery{})
			return err
		}},
		{"retrieve a payment method", "GET", "/v1/payment_methods/pm_floodgate_mock", func(t *testing.T) error {
			fp, err := c.CardFingerprint(ctx, "pm_floodgate_mock")
			if err == nil && fp == "" {
				t.Error("no fingerprint decoded")
			}
			return err
		}},
		{"cancel", "POST", "/v1/payment_intents/" + pi + "/cancel", func(t *testing.T) error {
			p, err := c.CancelPayment(ctx, pi, "cancel:"+pi)
			if err == nil {
				decoded(t, p)
			}
			return err
		}},
		{"cancel without a key", "POST", "/v1/payment_intents/" + pi + "/cancel", func(t *testing.T) error {
			_, err := c.CancelPayment(ctx, pi, "")
			return err
		}},
		{"refund a second payment", "POST", "/v1/refunds", func(t *testing.T) error {
			id, err := c.RefundPayment(ctx, pi, "floodgate-refund-"+pi)
			if err == nil && id == "" {
				t.Error("no refund id decoded")
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.Count()
			err := tt.call(t)
			if rec.Count() != before+1 {
				t.Fatalf("%d requests sent, want 1 (error %v)", rec.Count()-before, err)
			}
			x := rec.Last()
			if err != nil || x.Status != http.StatusOK {
				t.Fatalf("stripe-mock refused the request: %v\n%s", err, x)
			}
			if x.Method != tt.method || x.Path != tt.path {
				t.Errorf("sent %s %s, want %s %s", x.Method, x.Path, tt.method, tt.path)
			}
			t.Logf("accepted: %s %s %s%s", x.Method, x.Path, x.Query, x.Body)
		})
	}

	// The test means something only if stripe-mock does refuse what
	// Stripe refuses: an unknown parameter must be a 400.
	t.Run("refuses an unknown parameter", func(t *testing.T) {
		form := url.Values{"amount": {"2500"}, "currency": {"eur"}, "floodgate_unknown": {"1"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/payment_intents", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk_test_floodgateStripeMock")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("an unknown parameter was answered %d, want 400: stripe-mock is not validating", resp.StatusCode)
		}
	})
}

// findStripeMock returns the stripe-mock binary on PATH, in $GOBIN or in
// GOPATH/bin (where go install puts it), or "".
func findStripeMock() string {
	name := "stripe-mock"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	// The go command knows GOBIN and GOPATH even when they were set with
	// go env -w rather than in the environment.
	if gobin, err := exec.LookPath("go"); err == nil {
		if out, err := exec.Command(gobin, "env", "GOBIN", "GOPATH").Output(); err == nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) == 2 {
				if d := strings.TrimSpace(lines[0]); d != "" {
					dirs = append(dirs, d)
				}
				for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
					dirs = append(dirs, filepath.Join(gp, "bin"))
				}
			}
		}
	}
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// checkStripeMockVersion reads the module version go install stamped into
// the binary. Another version is only logged when developing; CI, which
// installs the pinned one, fails on it.
func checkStripeMockVersion(t *testing.T, bin string) {
	t.Helper()
	version := "unknown"
	if info, err := buildinfo.ReadFile(bin); err == nil && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	t.Logf("stripe-mock %s at %s", version, bin)
	if version != "unknown" && version != stripeMockVersion {
		if os.Getenv(requireStripeMock) != "" {
			t.Fatalf("stripe-mock %s found, %s is pinned; install it with: %s", version, stripeMockVersion, stripeMockInstall)
		}
		t.Logf("note: stripe-mock %s is pinned (%s)", stripeMockVersion, stripeMockInstall)
	}
}

// startStripeMock runs stripe-mock on ports of the system's choosing on the
// loopback interface, waits until it listens, and returns its HTTP base URL.
// It is stopped when the test ends.
func startStripeMock(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// stripe-mock starts an HTTPS listener too unless told where; both go
	// on free loopback ports.
	cmd := exec.CommandContext(ctx, bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var log strings.Builder
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		log.Write(p)
		return len(p), nil
	})
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			if log.Len() < 64<<10 {
				log.WriteString(line + "\n")
			}
			logMu.Unlock()
			if a, ok := strings.CutPrefix(line, "Listening for HTTP at address: "); ok && !sent {
				addr <- strings.TrimSpace(a)
				sent = true
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			logMu.Lock()
			defer logMu.Unlock()
			t.Logf("stripe-mock output:\n%s", log.String())
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-done:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("stripe-mock exited before listening:\n%s", log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("stripe-mock did not listen within 30s")
	}
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
