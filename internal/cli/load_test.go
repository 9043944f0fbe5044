package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/loadgen"
)

// load runs `floodgate load` with args against m and returns the JSON
// report, the exit code and what went to stderr.
func load(tb testing.TB, m *Main, args ...string) (*loadgen.Report, int, string) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--url", m.URL(), "--metrics", m.MetricsURL(), "--json"}, args...)
	err := runLoadCmd(context.Background(), args, Env{Stdout: &stdout, Stderr: &stderr})
	code := exitCode(err, &stderr)
	if stdout.Len() == 0 {
		return nil, code, stderr.String()
	}
	var rep loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		tb.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	return &rep, code, stderr.String()
}

// metric reads one unlabelled series from the node's /metrics.
func metric(tb testing.TB, m *Main, name string) float64 {
	tb.Helper()
	r := newClient(tb, m).do("GET", "/metrics", "")
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	tb.Fatalf("/metrics has no %s", name)
	return 0
}

// checkAccounted holds a report to its own arithmetic: every request in
// exactly one bucket, every arrival sent or dropped.
func checkAccounted(tb testing.TB, rep *loadgen.Report) {
	tb.Helper()
	q := rep.Requests
	if q.OK+q.Non2xx+q.NetworkErrors != q.Sent {
		tb.Errorf("requests: %d 2xx + %d non-2xx + %d network errors != %d sent", q.OK, q.Non2xx, q.NetworkErrors, q.Sent)
	}
	if rep.Sent+rep.Dropped != rep.Intended {
		tb.Errorf("arrivals: %d sent + %d dropped != %d intended", rep.Sent, rep.Dropped, rep.Intended)
	}
}

// TestLoadDonate: the report's count of 202s is the server's own count
// of accepted donations, and every request is accounted for.
func TestLoadDonate(t *testing.T) {
	m := startMain(t, nil)
	rep, code, stderr := load(t, m, "--rate", "50", "--duration", "3s", "--max-workers", "64", "--seed", "7")
	if code != ExitOK || rep == nil {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkAccounted(t, rep)
	q := rep.Requests
	if rep.Intended != 150 || rep.Scenario != "donate" || rep.Seed != 7 {
		t.Errorf("intended %d, scenario %s, seed %d", rep.Intended, rep.Scenario, rep.Seed)
	}
	if q.Sent != rep.Sent {
		t.Errorf("%d requests for %d arrivals", q.Sent, rep.Sent)
	}
	// A fresh node: its counter is what this run made it accept. A
	// request the HTTP client sent again with the same key is a replay,
	// counted apart by the server.
	accepted := uint64(metric(t, m, "floodgate_donations_accepted_total"))
	if q.Accepted-q.Replayed != accepted {
		t.Errorf("report: %d answered 202 (%d replays); server: %d accepted", q.Accepted, q.Replayed, accepted)
	}
	if q.Accepted == 0 {
		t.Error("no donation accepted")
	}
	sv := rep.Server
	if sv == nil {
		t.Fatalf("server section missing: %s", rep.ServerUnavailable)
	}
	if sv.Accepted != accepted || sv.AcceptedAfter != accepted || sv.PeakRSS == 0 || sv.CPUSeconds <= 0 {
		t.Errorf("server section: %+v, server accepted %d", sv, accepted)
	}
	if !strings.Contains(stderr, "load ") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}
}

// TestLoadJourney: a few donors' journeys at a tiny rate all settle.
func TestLoadJourney(t *testing.T) {
	m := startMain(t, nil)
	rep, code, stderr := load(t, m, "--scenario", "journey", "--rate", "2", "--duration", "2s", "--cards", "visa")
	if code != ExitOK || rep == nil {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkAccounted(t, rep)
	j := rep.Journeys
	if j == nil || j.Started != 4 || j.Settled != 4 || j.Outcomes["succeeded"] != 4 || rep.Dropped != 0 {
		t.Fatalf("journeys: %+v, dropped %d", j, rep.Dropped)
	}
	if j.SubmitToSettled.Count != 4 || j.SubmitToSettled.Max <= 0 {
		t.Errorf("submit to settled: %+v", j.SubmitToSettled)
	}
	for _, step := range []string{"page", "campaign", "submit", "poll"} {
		if rep.Requests.Steps[step].Count == 0 {
			t.Errorf("step %s not measured: %+v", step, rep.Requests.Steps)
		}
	}
	if rep.Requests.Non2xx != 0 || rep.Requests.NetworkErrors != 0 {
		t.Errorf("errors in a quiet journey run: %+v", rep.Requests.ByStatus)
	}
}

// TestLoadStream: subscribers see the totals move while donations come
// in.
func TestLoadStream(t *testing.T) {
	m := startMain(t, nil)
	rep, code, stderr := load(t, m, "--scenario", "stream", "--subscribers", "3", "--rate", "10", "--duration", "2s")
	if code != ExitOK || rep == nil {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkAccounted(t, rep)
	s := rep.Stream
	if s == nil || s.Connected != 3 || s.FailedToConnect != 0 || s.Dropped != 0 {
		t.Fatalf("stream: %+v", s)
	}
	if s.SawChange != 3 || s.Delivery.Count != s.Changes || s.Changes == 0 {
		t.Errorf("subscribers did not all see the totals move: %+v", s)
	}
	if rep.Requests.Accepted == 0 {
		t.Errorf("no background donation accepted: %+v", rep.Requests)
	}
}

// TestLoadThresholds: a broken threshold exits 1 with a line naming it.
func TestLoadThresholds(t *testing.T) {
	m := startMain(t, nil)
	var stdout, stderr bytes.Buffer
	err := runLoadCmd(context.Background(), []string{"--url", m.URL(), "--rate", "20", "--duration", "1s",
		"--max-p99", "1ns", "--max-dropped", "1000"}, Env{Stdout: &stdout, Stderr: &stderr})
	if code := exitCode(err, &stderr); code != ExitError {
		t.Fatalf("exit %d, want %d: %s", code, ExitError, stderr.String())
	}
	var broken []string
	for line := range strings.Lines(stderr.String()) {
		if strings.HasPrefix(line, "floodgate: threshold:") {
			broken = append(broken, line)
		}
	}
	if len(broken) != 1 || !strings.Contains(broken[0], "--max-p99 1ns") {
		t.Errorf("broken thresholds: %q", broken)
	}
	if !strings.Contains(stdout.String(), "from the intended send time") {
		t.Errorf("text report:\n%s", stdout.String())
	}
}

// TestLoadUsage: nonsense on the command line exits 2 with one line,
// before anything is sent.
func TestLoadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "rate 0"},
		{[]string{"--rate", "-5"}, "rate -5"},
		{[]string{"--duration", "0s"}, "duration 0s"},
		{[]string{"--scenario", "raffle"}, "raffle entries are not available"},
		{[]string{"--scenario", "lottery"}, "unknown"},
		{[]string{"--shape", "zigzag"}, "shape"},
		{[]string{"--shape", "spike", "--base", "500", "--rate", "100"}, "above the peak"},
		{[]string{"--max-workers", "0"}, "max-workers"},
		{[]string{"--min-rate", "1.5"}, "min-rate"},
		{[]string{"--cards", "visa=x"}, "cards"},
		{[]string{"--url", "localhost"}, "url"},
		{[]string{"extra"}, "no arguments"},
		{[]string{"--no-such-flag"}, "not defined"},
	} {
		var stdout, stderr bytes.Buffer
		err := runLoadCmd(context.Background(), tc.args, Env{Stdout: &stdout, Stderr: &stderr})
		var errOut bytes.Buffer
		code := exitCode(err, &errOut)
		line := strings.TrimSpace(errOut.String())
		if code != ExitConfig || !strings.Contains(line, tc.want) || strings.Contains(line, "\n") {
			t.Errorf("%q: exit %d, %q; want exit %d and one line containing %q", tc.args, code, line, ExitConfig, tc.want)
		}
	}
}

// TestLoadLimitsWarning runs `floodgate load` against a node whose
// card-testing limit per address is on (a small one, so that the test is
// short) and holds the generator's address suspect, as a load of
// declining cards would make it. Every request comes from that address,
// so the limit refuses most of them 429 rate_limited: the report, text
// and JSON, and stderr say so and name the server flags that turn the
// limits off. The exit code stays the thresholds' to decide: 0 without
// any, 1 when --max-error-rate breaks.
func TestLoadLimitsWarning(t *testing.T) {
	const limit = 10
	m := startMain(t, func(c *config.Config) { c.AddressLimit = limit })
	// Far more declines than the run's few accepted gifts can outnumber.
	for range 1000 {
		m.Guard.Learn(&floodgate.PaymentOrder{ClientAddr: "127.0.0.1", Status: floodgate.StatusFailed, FailureCode: "card_declined"})
	}
	if !m.Guard.Suspect("127.0.0.1") {
		t.Fatal("the generator's address is not suspect")
	}
	const flags = "--address-limit 0 --email-limit 0"
	checkWarning := func(t *testing.T, rep *loadgen.Report, stderr string) {
		t.Helper()
		checkAccounted(t, rep)
		q := rep.Requests
		// Each run is a new minute's window at most: no more than the
		// limit accepted, the rest refused by it.
		if q.Accepted > limit || q.RateLimited != q.Sent-q.Accepted || q.ByType["rate_limited"] != q.RateLimited {
			t.Errorf("accepted %d (limit %d), rate_limited %d of %d sent: %v", q.Accepted, limit, q.RateLimited, q.Sent, q.ByType)
		}
		if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], flags) ||
			!strings.Contains(rep.Warnings[0], "--trusted-proxies") || !strings.Contains(rep.Warnings[0], "one donor") {
			t.Fatalf("JSON report warnings: %q", rep.Warnings)
		}
		if !strings.Contains(stderr, "floodgate: warning: "+rep.Warnings[0]) {
			t.Errorf("stderr lacks the warning:\n%s", stderr)
		}
	}

	t.Run("no threshold: exit 0, warned", func(t *testing.T) {
		rep, code, stderr := load(t, m, "--rate", "50", "--duration", "1s", "--quiet")
		if code != ExitOK || rep == nil {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkWarning(t, rep, stderr)
	})
	t.Run("a threshold that holds: exit 0, warned", func(t *testing.T) {
		rep, code, stderr := load(t, m, "--rate", "50", "--duration", "1s", "--quiet", "--max-error-rate", "1")
		if code != ExitOK || rep == nil {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkWarning(t, rep, stderr)
	})
	t.Run("--max-error-rate broken: exit 1, warned", func(t *testing.T) {
		rep, code, stderr := load(t, m, "--rate", "50", "--duration", "1s", "--quiet", "--max-error-rate", "0.5")
		if code != ExitError || rep == nil {
			t.Fatalf("exit %d, want %d: %s", code, ExitError, stderr)
		}
		checkWarning(t, rep, stderr)
		if !strings.Contains(stderr, "--max-error-rate 0.5") {
			t.Errorf("stderr does not name the broken threshold:\n%s", stderr)
		}
	})
	t.Run("text report", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := runLoadCmd(context.Background(), []string{"--url", m.URL(), "--metrics", m.MetricsURL(), "--rate", "50", "--duration", "1s", "--quiet"},
			Env{Stdout: &stdout, Stderr: &stderr})
		if code := exitCode(err, &stderr); code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var warned string
		for line := range strings.Lines(stdout.String()) {
			if strings.HasPrefix(line, "warning ") {
				warned = line
			}
		}
		if !strings.Contains(warned, "429 rate_limited") || !strings.Contains(warned, flags) {
			t.Errorf("text report has no warning line:\n%s", stdout.String())
		}
	})
}

// TestLoadNoLimitsWarning: with the limits off, as the other load tests
// run, the same load draws no warning.
func TestLoadNoLimitsWarning(t *testing.T) {
	m := startMain(t, nil)
	rep, code, stderr := load(t, m, "--rate", "50", "--duration", "1s", "--quiet")
	if code != ExitOK || rep == nil {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if rep.Requests.RateLimited != 0 || len(rep.Warnings) != 0 || strings.Contains(stderr, "warning") {
		t.Errorf("rate_limited %d, warnings %q, stderr %q", rep.Requests.RateLimited, rep.Warnings, stderr)
	}
}
