package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const fakeCampaign = `{"id": "demo", "name": "Demo", "currency": "eur", "min_amount": 500, "max_amount": 1000000,
	"suggested_amounts": [1000, 2500, 5000, 10000], "state": "open"}`

// fakeServer is just enough of floodgate for the load generator: the
// campaign, a donation endpoint given by the test, and nothing else (no
// /metrics: a foreign server).
func fakeServer(tb testing.TB, donate http.HandlerFunc, more ...func(*http.ServeMux)) *httptest.Server {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/campaigns/demo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, fakeCampaign)
	})
	mux.HandleFunc("POST /v1/campaigns/demo/donations", donate)
	for _, m := range more {
		m(mux)
	}
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv
}

func accept(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"id": "don_1", "status": "accepted", "donor_token": "tok"}`)
}

func problem(w http.ResponseWriter, status int, typ string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type": %q, "title": "x", "status": %d}`, typ, status)
}

func seqOf(r *http.Request) int {
	n, _ := strconv.Atoi(r.Header.Get("X-Vegeta-Seq"))
	return n
}

func run(tb testing.TB, o Options) *Report {
	tb.Helper()
	return runUntil(context.Background(), tb, o)
}

// runUntil is run that ctx can end early (Run reports what happened until
// then).
func runUntil(ctx context.Context, tb testing.TB, o Options) *Report {
	tb.Helper()
	if o.Scenario == "" {
		o.Scenario = "donate"
	}
	if o.Campaign == "" {
		o.Campaign = "demo"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxWorkers == 0 {
		o.MaxWorkers = 50
	}
	if o.SettleTimeout == 0 {
		o.SettleTimeout = 30 * time.Second
	}
	if o.MetricsURL == "" {
		// The test servers serve /metrics beside their API.
		o.MetricsURL = strings.TrimRight(o.URL, "/") + "/metrics"
	}
	var progress bytes.Buffer
	r, err := Run(ctx, o, &progress)
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	if tb.Failed() || testing.Verbose() {
		tb.Logf("progress:\n%s", progress.String())
	}
	return r
}

// accounted checks that every request is in exactly one bucket and every
// arrival was sent or dropped.
func accounted(tb testing.TB, r *Report) {
	tb.Helper()
	q := r.Requests
	if q.OK+q.Non2xx+q.NetworkErrors != q.Sent {
		tb.Errorf("requests: %d 2xx + %d non-2xx + %d network errors != %d sent", q.OK, q.Non2xx, q.NetworkErrors, q.Sent)
	}
	if r.Sent+r.Dropped != r.Intended {
		tb.Errorf("arrivals: %d sent + %d dropped != %d intended", r.Sent, r.Dropped, r.Intended)
	}
	var byStatus uint64
	for _, n := range q.ByStatus {
		byStatus += n
	}
	if byStatus != q.Non2xx {
		tb.Errorf("by status %d != non-2xx %d", byStatus, q.Non2xx)
	}
}

// TestStallIsVisible is the point of measuring from the intended send
// time. The server stalls once, for a second, holding every request (a
// lock held through a pause, as a stop-the-world pause or a full disk
// would). With two workers, vegeta can have only two requests inside the
// stall; the hundreds that fall due meanwhile wait for a worker, and
// vegeta's Result.Latency (the report's service time) starts only when
// one is free, so it sees two slow requests. The report's latency starts
// when each request was due and shows the stall in every one of them.
//
// The verdicts are lower bounds, which a slow machine only raises, or
// comparisons with what the server itself held: a busy machine may slow
// any request on its own, under both measures alike. How many requests
// fall due in the stall's first half is counted from the stall, not from
// the schedule: the run ends once the server has answered the hundredth
// request after the last one it had seen when the stall began, and the
// minute of arrivals only bounds a hang. (A fixed window of two seconds
// closed, on a machine that fell behind the schedule, before the
// requests due in the stall were sent at all.)
func TestLoadStallIsVisible(t *testing.T) {
	const stallAt = 100 // the 101st request, half a second in
	ctx, end := context.WithCancel(context.Background())
	defer end()
	var mu sync.Mutex
	var stalled atomic.Bool
	var held atomic.Int64 // requests the server itself kept longer than slowThreshold
	// seen is the highest request number that has reached the server;
	// last is the request whose answer ends the run, set as the stall
	// begins.
	var seen, last atomic.Int64
	last.Store(math.MaxInt64)
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		in := time.Now()
		seq := int64(seqOf(r))
		for {
			if s := seen.Load(); seq <= s || seen.CompareAndSwap(s, seq) {
				break
			}
		}
		mu.Lock()
		if seq == stallAt && stalled.CompareAndSwap(false, true) {
			// Every request after seen was due no later than seen's
			// was, now at the latest, plus 5 ms per request: the next
			// hundred are due within the stall's first half, and reach
			// the server only after it ends.
			last.Store(seen.Load() + 100)
			time.Sleep(time.Second)
		}
		mu.Unlock()
		accept(w, r)
		if time.Since(in) > slowThreshold {
			held.Add(1)
		}
		if seq >= last.Load() {
			end() // every request before this one has been sent, and is answered before the run ends
		}
	})
	rep := runUntil(ctx, t, Options{URL: srv.URL, Shape: Constant{PerSecond: 200, Duration: time.Minute}, MaxWorkers: 2})
	accounted(t, rep)
	if !stalled.Load() {
		t.Fatal("the stall never happened")
	}
	q := rep.Requests
	t.Logf("from intended: %+v; from sent (vegeta): %+v; slow: %d vs %d; held by the server: %d",
		q.Latency, q.ServiceTime, q.SlowFromIntended, q.SlowFromSent, held.Load())
	if q.Latency.Max < 900*time.Millisecond || q.Latency.P99 < 900*time.Millisecond {
		t.Errorf("latency from the intended time hides the stall: max %s, p99 %s", q.Latency.Max, q.Latency.P99)
	}
	// Vegeta's own measure sees the requests the server held: they were
	// slow from the moment they were sent.
	if q.SlowFromSent < uint64(held.Load()) {
		t.Errorf("%d requests slow from the moment sent; the server itself held %d that long", q.SlowFromSent, held.Load())
	}
	// Half the stall's requests were due in its first half: each waited
	// more than half a second for a worker, and was then served at once.
	// The report sees them; vegeta's measure, which starts when a worker
	// takes the request, does not. (A request slow from the moment sent is
	// slow from its intended time too, so the difference counts exactly
	// the requests whose slowness was waiting for a worker.) The stalled
	// request and the hundred after the last one the server had seen are
	// slow from their intended time whatever the machine; the verdict
	// fails only if more than 49 of those also took over half a second
	// to be served on their own.
	if q.SlowFromIntended < q.SlowFromSent+50 {
		t.Errorf("%d requests slower than %s from their intended time, %d from the moment sent: the stall delayed about 200 that vegeta's measure does not see",
			q.SlowFromIntended, slowThreshold, q.SlowFromSent)
	}
	// Per request, the latency from the intended time is never below the
	// time from the moment sent, so neither is any quantile.
	if q.ServiceTime.P99 > q.Latency.P99 || q.ServiceTime.Max > q.Latency.Max {
		t.Errorf("vegeta's p99 %s, max %s above the report's %s, %s", q.ServiceTime.P99, q.ServiceTime.Max, q.Latency.P99, q.Latency.Max)
	}
	if rep.ServerUnavailable == "" || rep.Server != nil {
		t.Errorf("a server without /metrics: server %+v, unavailable %q", rep.Server, rep.ServerUnavailable)
	}
}

// TestProblemsCounted checks that every answer outside 2xx is counted by
// status and by problem type, and network errors apart: the report's
// counts equal what the server answered.
func TestLoadProblemsCounted(t *testing.T) {
	// The arrivals answered, by seq % 10: 0-4 as below, 5 accepted. Kept
	// by seq: Go's transport resends a request carrying an Idempotency-Key
	// once when its connection closes before an answer, and that is still
	// one arrival.
	var (
		mu   sync.Mutex
		seen [6]map[int]bool
	)
	for i := range seen {
		seen[i] = map[int]bool{}
	}
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		kind := min(seqOf(r)%10, 5)
		mu.Lock()
		seen[kind][seqOf(r)] = true
		mu.Unlock()
		switch kind {
		case 0:
			w.Header().Set("Retry-After", "1")
			problem(w, 429, "rate_limited")
		case 1:
			problem(w, 503, "overloaded")
		case 2:
			problem(w, 422, "idempotency_mismatch")
		case 3:
			http.Error(w, "upstream broke", http.StatusBadGateway)
		case 4:
			// No answer at all: the connection is closed under the request.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		default:
			accept(w, r)
		}
	})
	rep := run(t, Options{URL: srv.URL, Shape: Constant{PerSecond: 200, Duration: time.Second}})
	accounted(t, rep)
	q := rep.Requests
	// A machine too busy to send an arrival in time drops it (counted);
	// every arrival sent is counted by what the server answered.
	mu.Lock()
	defer mu.Unlock()
	var served uint64
	for i := range seen {
		served += uint64(len(seen[i]))
	}
	if rep.Sent < 100 || q.Sent != served {
		t.Fatalf("sent %d arrivals, %d requests; the server saw %d (dropped %d)", rep.Sent, q.Sent, served, rep.Dropped)
	}
	n := func(kind int) uint64 { return uint64(len(seen[kind])) }
	wantStatus := map[string]uint64{"429": n(0), "503": n(1), "422": n(2), "502": n(3)}
	wantType := map[string]uint64{"rate_limited": n(0), "overloaded": n(1), "idempotency_mismatch": n(2), noProblemType: n(3)}
	for k, v := range wantStatus {
		if q.ByStatus[k] != v {
			t.Errorf("status %s: %d, want %d (all: %v)", k, q.ByStatus[k], v, q.ByStatus)
		}
	}
	for k, v := range wantType {
		if q.ByType[k] != v {
			t.Errorf("type %s: %d, want %d (all: %v)", k, q.ByType[k], v, q.ByType)
		}
	}
	if q.Status429 != n(0) || q.Status503 != n(1) || q.NetworkErrors != n(4) || q.OK != n(5) || q.Accepted != n(5) {
		t.Errorf("429 %d, 503 %d, network %d (%v), 2xx %d, 202 %d; the server answered %v", q.Status429, q.Status503, q.NetworkErrors,
			q.NetworkErrorKinds, q.OK, q.Accepted, []uint64{n(0), n(1), n(2), n(3), n(4), n(5)})
	}
	if want := float64(served-n(5)) / float64(served); math.Abs(q.ErrorRate-want) > 1e-9 {
		t.Errorf("error rate %g, want %g", q.ErrorRate, want)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("rate_limited: %d", n(0)), fmt.Sprintf("429: %d", n(0)), "network", "cost not measured"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	broken := rep.Check(Thresholds{MaxErrorRate: ptr(0.01)})
	if len(broken) != 1 || !strings.Contains(broken[0], "max-error-rate") {
		t.Errorf("error-rate threshold: %q", broken)
	}
	// A tenth of the answers rate_limited among many other errors is not
	// a run the card-testing limits took over.
	if q.RateLimited != n(0) || len(rep.Warnings) != 0 {
		t.Errorf("rate_limited 429s %d (server answered %d), warnings %q", q.RateLimited, n(0), rep.Warnings)
	}
}

// TestLoadLimitsWarning: a server whose card-testing limits refuse most
// requests (429 rate_limited, as floodgate's per-address limit answers one
// load generator) makes a report that says so and names the server flags
// that turn them off, in text and in JSON; a 429 of another type, or a few
// among other errors, does not.
func TestLoadLimitsWarning(t *testing.T) {
	for _, tc := range []struct {
		name string
		// answer answers the arrival with this seq; true when it refused
		// it rate_limited.
		answer func(w http.ResponseWriter, r *http.Request) bool
		warn   bool
	}{
		{"most refused rate_limited", func(w http.ResponseWriter, r *http.Request) bool {
			if seqOf(r)%10 < 2 {
				accept(w, r)
				return false
			}
			w.Header().Set("Retry-After", "30")
			problem(w, 429, "rate_limited")
			return true
		}, true},
		{"429 of another type", func(w http.ResponseWriter, r *http.Request) bool {
			problem(w, 429, "slow_down")
			return false
		}, false},
		{"all accepted", func(w http.ResponseWriter, r *http.Request) bool {
			accept(w, r)
			return false
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var limited sync.Map // seq -> true: a resent request is one arrival
			srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.answer(w, r) {
					limited.Store(seqOf(r), true)
				}
			})
			rep := run(t, Options{URL: srv.URL, Shape: Constant{PerSecond: 100, Duration: time.Second}})
			accounted(t, rep)
			var want uint64
			limited.Range(func(any, any) bool { want++; return true })
			if rep.Requests.RateLimited != want {
				t.Errorf("rate_limited 429s: %d, the server answered %d", rep.Requests.RateLimited, want)
			}
			if !tc.warn {
				if len(rep.Warnings) != 0 {
					t.Errorf("warnings: %q", rep.Warnings)
				}
				return
			}
			if len(rep.Warnings) != 1 {
				t.Fatalf("warnings: %q, want one", rep.Warnings)
			}
			w := rep.Warnings[0]
			for _, part := range []string{fmt.Sprintf("%d of %d requests", want, rep.Requests.Sent), "one donor",
				"--address-limit 0 --email-limit 0", "--trusted-proxies"} {
				if !strings.Contains(w, part) {
					t.Errorf("warning lacks %q: %s", part, w)
				}
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "warning   "+w) {
				t.Errorf("text report lacks the warning:\n%s", text.String())
			}
			js, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			var back struct {
				Warnings []string `json:"warnings"`
				Requests struct {
					RateLimited uint64 `json:"rate_limited_429"`
				} `json:"requests"`
			}
			if err := json.Unmarshal(js, &back); err != nil || len(back.Warnings) != 1 || back.Warnings[0] != w ||
				back.Requests.RateLimited != want {
				t.Errorf("JSON report: warnings %q, rate_limited_429 %d (%v)", back.Warnings, back.Requests.RateLimited, err)
			}
			// The warning is advice: thresholds alone decide the verdict.
			if got := rep.Check(Thresholds{}); len(got) != 0 {
				t.Errorf("no threshold set, yet broken: %q", got)
			}
			if got := rep.Check(Thresholds{MaxErrorRate: ptr(0.5)}); len(got) != 1 {
				t.Errorf("--max-error-rate 0.5 with %.2f errors: %q", rep.Requests.ErrorRate, got)
			}
		})
	}
}

// TestLoadLimitsCountedGenerator is the rule of the warning, on counts.
func TestLoadLimitsCountedGenerator(t *testing.T) {
	for _, tc := range []struct {
		sent, non2xx, limited uint64
		want                  bool
	}{
		{1000, 0, 0, false},
		{1000, 951, 951, true},  // the measured case: 95% refused
		{1000, 501, 501, true},  // more than half of those sent
		{1000, 500, 500, true},  // half of those sent, all of the non-2xx
		{1000, 900, 500, false}, // half of those sent, a little over half of the non-2xx
		{1000, 30, 20, true},    // two thirds of the non-2xx, 2% of those sent
		{1000, 30, 19, false},   // under two thirds of the non-2xx
		{1000, 9, 9, false},     // all the non-2xx, under 1% of those sent
		{1000, 10, 10, true},    // all the non-2xx, 1% of those sent
	} {
		q := Requests{Sent: tc.sent, Non2xx: tc.non2xx, RateLimited: tc.limited}
		if got := q.LimitsCountedGenerator(); got != tc.want {
			t.Errorf("%d rate_limited of %d non-2xx of %d sent: %v, want %v", tc.limited, tc.non2xx, tc.sent, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestLoadThresholds(t *testing.T) {
	r := &Report{Scenario: "donate", Intended: 1000, Sent: 900, Dropped: 100, TargetRate: 100, AchievedRate: 90,
		Requests: Requests{Sent: 900, OK: 891, Non2xx: 9, ErrorRate: 0.01,
			Latency: Dist{Count: 900, P99: 30 * time.Millisecond}}}
	for _, tc := range []struct {
		name string
		th   Thresholds
		want []string // substrings, one per broken line
	}{
		{"none set", Thresholds{}, nil},
		{"all met", Thresholds{MaxP99: 50 * time.Millisecond, MaxErrorRate: ptr(0.02), MinRate: ptr(0.9), MaxDropped: ptr(uint64(100))}, nil},
		{"p99", Thresholds{MaxP99: 20 * time.Millisecond}, []string{"--max-p99 20ms"}},
		{"error rate", Thresholds{MaxErrorRate: ptr(0.005)}, []string{"--max-error-rate 0.005"}},
		{"zero errors allowed", Thresholds{MaxErrorRate: ptr(0.0)}, []string{"--max-error-rate 0"}},
		{"rate", Thresholds{MinRate: ptr(0.95)}, []string{"--min-rate 0.95"}},
		{"dropped", Thresholds{MaxDropped: ptr(uint64(0))}, []string{"--max-dropped 0"}},
		{"all broken", Thresholds{MaxP99: time.Nanosecond, MaxErrorRate: ptr(0.0), MinRate: ptr(1.0), MaxDropped: ptr(uint64(0))},
			[]string{"max-p99", "max-error-rate", "min-rate", "max-dropped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Check(tc.th)
			if len(got) != len(tc.want) {
				t.Fatalf("broken: %q, want %d lines", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) || strings.Contains(got[i], "\n") {
					t.Errorf("line %d: %q, want one line containing %q", i, got[i], w)
				}
			}
		})
	}
	// Streams count failed and dropped subscribers as dropped.
	s := &Report{Scenario: "stream", Stream: &Stream{FailedToConnect: 2, Dropped: 1}}
	if got := s.Check(Thresholds{MaxDropped: ptr(uint64(2))}); len(got) != 1 || !strings.Contains(got[0], "3 dropped") {
		t.Errorf("stream dropped: %q", got)
	}
}

// TestUnsentCounted: with one worker and a server slower than the rate
// allows, the requests that could not be sent before the run ended are
// counted, not forgotten.
func TestLoadUnsentCounted(t *testing.T) {
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		accept(w, r)
	})
	rep := run(t, Options{URL: srv.URL, Shape: Constant{PerSecond: 50, Duration: time.Second}, MaxWorkers: 1})
	accounted(t, rep)
	// One worker at 100 ms a request sends about 10 of the 50.
	if rep.Intended != 50 || rep.Dropped < 20 {
		t.Errorf("intended %d, sent %d, dropped %d: one worker cannot send 50 requests of 100 ms in a second",
			rep.Intended, rep.Sent, rep.Dropped)
	}
	if got := rep.Check(Thresholds{MaxDropped: ptr(uint64(0)), MinRate: ptr(0.9)}); len(got) != 2 {
		t.Errorf("thresholds: %q", got)
	}
}

// TestJourney follows donors through a server that is busy once and then
// makes them wait in line.
func TestLoadJourney(t *testing.T) {
	var posts, polls sync.Map // by idempotency key / donation id: attempts
	var ids atomic.Int64
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		n, _ := posts.LoadOrStore(key, new(atomic.Int64))
		if n.(*atomic.Int64).Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			problem(w, 503, "overloaded")
			return
		}
		body, _ := io.ReadAll(r.Body)
		var d struct {
			PaymentMethod string `json:"payment_method"`
		}
		_ = json.Unmarshal(body, &d)
		id := fmt.Sprintf("don_%d_%s", ids.Add(1), strings.TrimPrefix(d.PaymentMethod, "pm_card_"))
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"id": %q, "status": "accepted", "donor_token": "tok-%s"}`, id, id)
	}, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /c/demo", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>") })
		mux.HandleFunc("GET /v1/donations/{id}", func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if r.Header.Get("Authorization") != "Bearer tok-"+id {
				problem(w, 401, "unauthorized")
				return
			}
			n, _ := polls.LoadOrStore(id, new(atomic.Int64))
			status := "accepted"
			if n.(*atomic.Int64).Add(1) > 1 {
				status = "succeeded"
				if strings.HasSuffix(id, "chargeDeclined") {
					status = "failed"
				}
			} else {
				w.Header().Set("Retry-After", "1")
			}
			fmt.Fprintf(w, `{"id": %q, "status": %q}`, id, status)
		})
	})
	rep := run(t, Options{URL: srv.URL, Scenario: "journey", Shape: Constant{PerSecond: 5, Duration: time.Second},
		Cards: []Card{{"pm_card_visa", 1}, {"pm_card_chargeDeclined", 1}}})
	accounted(t, rep)
	j := rep.Journeys
	if j == nil || j.Started != 5 || j.Settled != 5 || j.Outcomes["succeeded"]+j.Outcomes["failed"] != 5 {
		t.Fatalf("journeys: %+v", j)
	}
	if j.SubmitRetries != 5 {
		t.Errorf("submit retries %d, want 5 (each POST was answered 503 once)", j.SubmitRetries)
	}
	// Each journey: page, campaign, two POSTs, two polls.
	q := rep.Requests
	if q.Sent != 30 || q.Status503 != 5 || q.ByType["overloaded"] != 5 {
		t.Errorf("requests %d (want 30), 503s %d: %+v", q.Sent, q.Status503, q.ByStatus)
	}
	for _, step := range []string{"page", "campaign", "submit", "poll"} {
		if q.Steps[step].Count == 0 {
			t.Errorf("no %s step recorded: %v", step, q.Steps)
		}
	}
	// Retry-After 1 on the POST and on the first poll: two seconds at
	// least from submit to settled.
	if j.SubmitToSettled.Count != 5 || j.SubmitToSettled.Min < 2*time.Second {
		t.Errorf("submit to settled: %+v", j.SubmitToSettled)
	}
}

// TestStream holds subscribers on a fake event stream whose totals were
// updated 50 ms before each event is sent, and one subscriber too many.
func TestLoadStream(t *testing.T) {
	var open atomic.Int64
	srv := fakeServer(t, accept, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /v1/campaigns/demo/events", func(w http.ResponseWriter, r *http.Request) {
			if open.Add(1) > 3 {
				open.Add(-1)
				problem(w, 503, "overloaded")
				return
			}
			defer open.Add(-1)
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			send := func(at time.Time) bool {
				_, err := fmt.Fprintf(w, "event: totals\ndata: {\"campaign\": \"demo\", \"updated_at\": %q}\n\n", at.Format(time.RFC3339Nano))
				return err == nil && rc.Flush() == nil
			}
			if !send(time.Now().Add(-time.Hour)) { // the state at connect: old news
				return
			}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-r.Context().Done():
					return
				case <-tick.C:
					_, _ = io.WriteString(w, ": heartbeat\n\n")
					if !send(time.Now().Add(-50 * time.Millisecond)) {
						return
					}
				}
			}
		})
	})
	rep := run(t, Options{URL: srv.URL, Scenario: "stream", Subscribers: 4, Hold: time.Second})
	s := rep.Stream
	if s == nil || s.Connected != 3 || s.FailedToConnect != 1 || s.ConnectFailures["503 overloaded"] != 1 || s.Dropped != 0 {
		t.Fatalf("stream: %+v", s)
	}
	if s.SawChange != 3 || s.Changes == 0 || s.Events != s.Changes+3 {
		t.Errorf("events %d, changes %d, saw change %d", s.Events, s.Changes, s.SawChange)
	}
	// Every change was 50 ms old when sent; the first, an hour old, is
	// not timed.
	if s.Delivery.Min < 50*time.Millisecond || s.Delivery.Max >= time.Hour {
		t.Errorf("delivery: %+v", s.Delivery)
	}
	if got := rep.Check(Thresholds{MaxDropped: ptr(uint64(0))}); len(got) != 1 {
		t.Errorf("a refused subscriber breaks --max-dropped 0: %q", got)
	}
}

func TestLoadValidate(t *testing.T) {
	ok := Options{URL: "http://localhost:8080", Scenario: "donate", Shape: Constant{PerSecond: 1, Duration: time.Second},
		MaxWorkers: 1, Timeout: time.Second, Campaign: "demo"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Options){
		"raffle":         func(o *Options) { o.Scenario = "raffle" },
		"unknown":        func(o *Options) { o.Scenario = "lottery" },
		"url":            func(o *Options) { o.URL = "localhost:8080" },
		"no shape":       func(o *Options) { o.Shape = nil },
		"no hits":        func(o *Options) { o.Shape = Constant{PerSecond: 0.5, Duration: time.Second} },
		"zero duration":  func(o *Options) { o.Shape = Constant{PerSecond: 10} },
		"workers":        func(o *Options) { o.MaxWorkers = 0 },
		"timeout":        func(o *Options) { o.Timeout = 0 },
		"no subscribers": func(o *Options) { o.Scenario = "stream" },
		"no settle":      func(o *Options) { o.Scenario = "journey" },
	} {
		o := ok
		change(&o)
		err := o.Validate()
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := (&Options{URL: "http://x", Scenario: "raffle"}).Validate(); err != ErrNoRaffles {
		t.Errorf("raffle: %v", err)
	}
}

func TestLoadParseCards(t *testing.T) {
	c, err := ParseCards("visa=90, mastercard=7,declined=3,pm_card_authenticationRequired")
	if err != nil {
		t.Fatal(err)
	}
	want := []Card{{"pm_card_visa", 90}, {"pm_card_mastercard", 7}, {"pm_card_chargeDeclined", 3}, {"pm_card_authenticationRequired", 1}}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("cards %v, want %v", c, want)
	}
	for _, bad := range []string{"", "visa=-1", "visa=x", "visa=0", "=3"} {
		if _, err := ParseCards(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDonors: amounts within the campaign's bounds and mostly its
// suggestions, keys and emails unique, cards in their proportions.
func TestLoadDonors(t *testing.T) {
	var camp campaign
	if err := json.Unmarshal([]byte(fakeCampaign), &camp); err != nil {
		t.Fatal(err)
	}
	cards, _ := ParseCards(DefaultCards)
	d := newDonors(camp, cards, 42)
	keys, emails := map[string]bool{}, map[string]bool{}
	count := map[string]int{}
	suggested := 0
	const n = 10000
	for range n {
		key, body := d.next()
		var b donationBody
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		if b.Amount < camp.MinAmount || b.Amount > camp.MaxAmount || b.Currency != "eur" {
			t.Fatalf("amount %d %s outside the campaign", b.Amount, b.Currency)
		}
		for _, s := range camp.SuggestedAmounts {
			if b.Amount == s {
				suggested++
			}
		}
		if keys[key] || emails[b.Email] {
			t.Fatalf("key %s or email %s used twice", key, b.Email)
		}
		keys[key], emails[b.Email] = true, true
		count[b.PaymentMethod]++
	}
	if suggested < n*6/10 || suggested > n*9/10 {
		t.Errorf("%d of %d amounts are suggested ones", suggested, n)
	}
	if v := count["pm_card_visa"]; v < n*85/100 || count["pm_card_mastercard"] == 0 || count["pm_card_chargeDeclined"] == 0 {
		t.Errorf("card mix: %v", count)
	}
}

func TestLoadParseMetrics(t *testing.T) {
	const text = `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.2e+07
# TYPE floodgate_donations_accepted_total counter
floodgate_donations_accepted_total 1000
# TYPE floodgate_donations_replayed_total counter
floodgate_donations_replayed_total 3
# TYPE floodgate_requests_shed_total counter
floodgate_requests_shed_total{reason="ingest_queue_full"} 7
`
	before, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	after := serverSample{cpu: 13.5, rss: 5e7, accepted: 3000, replayed: 3}
	sv := serverReport(before, after, 6e7, 4)
	if sv.Accepted != 2000 || sv.CPUMicrosPerAccepted != 500 || sv.PeakRSS != 6e7 || sv.RSSBefore != 42e6 {
		t.Errorf("server: %+v", sv)
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines 3\n")); err == nil {
		t.Error("a /metrics without floodgate's series was accepted")
	}
}

func TestMetricsURLFor(t *testing.T) {
	for base, want := range map[string]string{
		"http://localhost:8080":     "http://localhost:9464/metrics",
		"https://give.example.org/": "http://give.example.org:9464/metrics",
		"http://[::1]:8080":         "http://[::1]:9464/metrics",
		"not a url":                 "",
	} {
		if got := MetricsURLFor(base); got != want {
			t.Errorf("MetricsURLFor(%q) = %q, want %q", base, got, want)
		}
	}
}
