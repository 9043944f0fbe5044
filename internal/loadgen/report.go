package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is everything a run measured. It is written as text for people
// and as JSON for scripts; every request sent is in exactly one of OK,
// Non2xx and NetworkErrors.
type Report struct {
	Scenario    string    `json:"scenario"`
	URL         string    `json:"url"`
	Campaign    string    `json:"campaign"`
	Shape       string    `json:"shape,omitempty"`
	Seed        uint64    `json:"seed"`
	MaxWorkers  int       `json:"max_workers"`
	Started     time.Time `json:"started"`
	Interrupted bool      `json:"interrupted,omitempty"`
	// DurationSeconds is the arrival window the rates are over (shorter
	// than the shape's when the run was interrupted); ElapsedSeconds also
	// counts the time to finish what was in flight.
	DurationSeconds float64 `json:"duration_s"`
	ElapsedSeconds  float64 `json:"elapsed_s"`

	// Arrivals are requests for donate, journeys for journey, and the
	// background donations for stream. Intended = Sent + Dropped: an
	// arrival the shape asked for that could not even start by the end of
	// the window (plus a grace of 250 ms for scheduling noise) is dropped,
	// never silently forgotten.
	Intended     uint64  `json:"intended"`
	Sent         uint64  `json:"sent"`
	Dropped      uint64  `json:"dropped"`
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_rate"`

	Requests Requests  `json:"requests"`
	Journeys *Journeys `json:"journeys,omitempty"`
	Stream   *Stream   `json:"stream,omitempty"`
	// Server is the server's own cost, from its /metrics; when that could
	// not be read, ServerUnavailable says why and Server is nil.
	Server            *Server `json:"server,omitempty"`
	ServerUnavailable string  `json:"server_unavailable,omitempty"`
	// MetricsURL is where the server's cost was read.
	MetricsURL string `json:"metrics_url,omitempty"`

	// Warnings say, one sentence each, when the figures measure something
	// other than the server's capacity and how to run it so that they do
	// not. They never change the exit code: thresholds decide that.
	Warnings []string `json:"warnings,omitempty"`
}

// Requests accounts for every HTTP request sent (Sent = OK + Non2xx +
// NetworkErrors).
type Requests struct {
	Sent          uint64 `json:"sent"`
	OK            uint64 `json:"ok_2xx"`
	Accepted      uint64 `json:"accepted_202"`
	Replayed      uint64 `json:"replayed"`
	Non2xx        uint64 `json:"non_2xx"`
	NetworkErrors uint64 `json:"network_errors"`
	Status429     uint64 `json:"status_429"`
	Status503     uint64 `json:"status_503"`
	// RateLimited counts the 429s of problem type rate_limited: refusals
	// by the server's card-testing limits per client address and email.
	RateLimited uint64 `json:"rate_limited_429"`
	// ErrorRate is (Non2xx + NetworkErrors) / Sent.
	ErrorRate float64 `json:"error_rate"`
	// ByStatus counts answers outside 2xx by status; ByType counts 4xx
	// and 5xx by their problem+json type.
	ByStatus          map[string]uint64 `json:"by_status"`
	ByType            map[string]uint64 `json:"by_problem_type"`
	NetworkErrorKinds map[string]uint64 `json:"network_errors_by_kind"`
	// Latency is measured from the moment each request was due to the
	// end of its answer: the donor's wait. ServiceTime is measured from
	// the moment a worker actually sent it (vegeta's Result.Latency): it
	// leaves out time spent queued behind busy workers, and is shown only
	// to make the difference visible.
	Latency     Dist `json:"latency"`
	ServiceTime Dist `json:"service_time"`
	// SlowFromIntended and SlowFromSent count requests slower than
	// SlowOverMS under each measure.
	SlowOverMS       float64 `json:"slow_over_ms"`
	SlowFromIntended uint64  `json:"slow_from_intended"`
	SlowFromSent     uint64  `json:"slow_from_sent"`
	// Steps splits a journey's requests by step (page, campaign, submit,
	// poll); each measured from when that step was due.
	Steps map[string]Dist `json:"steps,omitempty"`
}

// Journeys is what donors' browsers went through.
type Journeys struct {
	Started uint64 `json:"started"`
	Dropped uint64 `json:"dropped"`
	// Outcomes counts journeys by how they ended: a final status
	// (succeeded, failed, canceled), requires_action (the donor must act),
	// unsettled (still waiting at the settle timeout), gave_up_busy (the
	// POST was still answered busy at the settle timeout), or the step
	// that failed for good (page_failed, campaign_failed, submit_refused,
	// lookup_failed), or interrupted.
	Outcomes map[string]uint64 `json:"outcomes"`
	Settled  uint64            `json:"settled"`
	// SubmitRetries counts donation POSTs sent again (same key) after a
	// busy answer or a network error, as the donation page does.
	SubmitRetries uint64 `json:"submit_retries"`
	// MaxQueuePosition and MaxETASeconds are the longest line and wait
	// the server told any waiting donor.
	MaxQueuePosition int64 `json:"max_queue_position"`
	MaxETASeconds    int64 `json:"max_eta_seconds"`
	// SubmitToSettled runs from the first POST to the answer that showed
	// a settled status; ArrivalToSettled from the moment the donor was due
	// to arrive.
	SubmitToSettled  Dist `json:"submit_to_settled"`
	ArrivalToSettled Dist `json:"arrival_to_settled"`
}

// Stream is what live-total subscribers saw.
type Stream struct {
	Subscribers     int               `json:"subscribers"`
	Connected       uint64            `json:"connected"`
	FailedToConnect uint64            `json:"failed_to_connect"`
	ConnectFailures map[string]uint64 `json:"connect_failures"`
	// Dropped counts streams that ended before the run did.
	Dropped uint64 `json:"dropped"`
	// Events counts totals events received, the first of each stream
	// included; Changes leaves the first out (it is the state at connect,
	// not news). SawChange counts subscribers that received a change.
	Events    uint64 `json:"events"`
	Changes   uint64 `json:"changes"`
	SawChange uint64 `json:"saw_change"`
	// Delivery runs, for every change each subscriber received, from the
	// totals' updated_at to the moment the event arrived (one machine's
	// clock for both, or the figure means nothing).
	Delivery Dist `json:"delivery"`
	Connect  Dist `json:"connect"`
}

// Server is the server's cost, read from its /metrics.
type Server struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	Accepted   uint64  `json:"accepted"`
	Replayed   uint64  `json:"replayed"`
	// AcceptedAfter is the server's floodgate_donations_accepted_total
	// after the run.
	AcceptedAfter uint64 `json:"accepted_after"`
	// CPUMicrosPerAccepted is the server's CPU time over the donations
	// it accepted during the run (0 when it accepted none). A server in
	// the load generator's own process counts the generator's CPU too.
	CPUMicrosPerAccepted float64 `json:"cpu_us_per_accepted"`
	RSSBefore            uint64  `json:"rss_before_bytes"`
	RSSAfter             uint64  `json:"rss_after_bytes"`
	PeakRSS              uint64  `json:"peak_rss_bytes"`
	Samples              int     `json:"samples"`
}

// rateLimitedType is the problem type of the server's card-testing
// limits (floodgate.ERATELIMITED).
const rateLimitedType = "rate_limited"

// LimitsCountedGenerator says whether the server's card-testing limits
// refused so much of the run that it measured them rather than the
// server: more than half of the requests sent, or at least two thirds of
// the answers outside 2xx when those are at least 1% of the requests. A
// load generator sends from one address, and the limit per address sees
// it as one very busy donor; a few refusals among many other errors are
// left to the error counts.
func (q Requests) LimitsCountedGenerator() bool {
	n := q.RateLimited
	return n > 0 && (2*n > q.Sent || (3*n >= 2*q.Non2xx && 100*n >= q.Sent))
}

// limitsWarning is the warning for LimitsCountedGenerator. It names every
// per-address and per-email limit of the card-testing defence, so that
// the advice holds whichever of them refused the load. A trusted proxy
// helps only when it names many clients: behind it, the limits count the
// client in X-Forwarded-For, and one generator is still one client.
func limitsWarning(q Requests) string {
	return fmt.Sprintf("%d of %d requests were refused 429 rate_limited: the server's card-testing limits "+
		"(per client address, per email) are counting this load generator as one donor, so the run measured "+
		"those limits, not the server. Turn the card-testing limits off on the server under test: "+
		"--address-limit 0 --email-limit 0; or send the load from many client "+
		"addresses through a proxy listed in the server's --trusted-proxies, which names each client in "+
		"X-Forwarded-For.", q.RateLimited, q.Sent)
}

// warn fills Warnings from the figures.
func (r *Report) warn() {
	r.Warnings = nil
	if r.Requests.LimitsCountedGenerator() {
		r.Warnings = append(r.Warnings, limitsWarning(r.Requests))
	}
}

// Thresholds turn a report into a verdict. A zero MaxP99 and nil pointers
// check nothing.
type Thresholds struct {
	// MaxP99 bounds the p99 of request latency (from the intended time).
	MaxP99 time.Duration
	// MaxErrorRate bounds (non-2xx + network errors) / sent.
	MaxErrorRate *float64
	// MinRate is the least achieved rate, as a fraction of the target.
	MinRate *float64
	// MaxDropped bounds arrivals that could not start, plus, for stream,
	// subscribers that failed to connect or were dropped.
	MaxDropped *uint64
}

// Check returns one line per broken threshold; none means the run passed.
func (r *Report) Check(t Thresholds) []string {
	var out []string
	if t.MaxP99 > 0 && r.Requests.Latency.P99 > t.MaxP99 {
		out = append(out, fmt.Sprintf("p99 latency %s is above --max-p99 %s", fmtDur(r.Requests.Latency.P99), t.MaxP99))
	}
	if t.MaxErrorRate != nil && r.Requests.ErrorRate > *t.MaxErrorRate {
		out = append(out, fmt.Sprintf("error rate %.4g (%d of %d requests) is above --max-error-rate %g",
			r.Requests.ErrorRate, r.Requests.Non2xx+r.Requests.NetworkErrors, r.Requests.Sent, *t.MaxErrorRate))
	}
	if t.MinRate != nil && r.Intended > 0 {
		if f := float64(r.Sent) / float64(r.Intended); f < *t.MinRate {
			out = append(out, fmt.Sprintf("achieved rate %.1f/s is %.3g of the target %.1f/s, below --min-rate %g",
				r.AchievedRate, f, r.TargetRate, *t.MinRate))
		}
	}
	if t.MaxDropped != nil {
		if d := r.DroppedAll(); d > *t.MaxDropped {
			out = append(out, fmt.Sprintf("%d dropped (%s), above --max-dropped %d", d, r.droppedWhat(), *t.MaxDropped))
		}
	}
	return out
}

// DroppedAll is what --max-dropped counts: arrivals that could not start,
// and subscribers that failed to connect or were dropped.
func (r *Report) DroppedAll() uint64 {
	d := r.Dropped
	if r.Stream != nil {
		d += r.Stream.FailedToConnect + r.Stream.Dropped
	}
	return d
}

func (r *Report) droppedWhat() string {
	parts := []string{fmt.Sprintf("%d unsent", r.Dropped)}
	if r.Scenario == "journey" {
		parts[0] = fmt.Sprintf("%d journeys never started", r.Dropped)
	}
	if r.Stream != nil {
		parts = append(parts, fmt.Sprintf("%d subscribers failed to connect", r.Stream.FailedToConnect),
			fmt.Sprintf("%d subscribers dropped", r.Stream.Dropped))
	}
	return strings.Join(parts, ", ")
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("floodgate load: %s against %s, campaign %s", r.Scenario, r.URL, r.Campaign)
	if r.Interrupted {
		p.f("  (interrupted: the figures cover the run until then)")
	}
	if r.Shape != "" {
		p.row("shape", "%s; at most %d workers; seed %d", r.Shape, r.MaxWorkers, r.Seed)
		what := "requests"
		if r.Scenario == "journey" {
			what = "journeys"
		}
		p.row("arrivals", "%d %s intended, %d sent, %d unsent (could not start by the end of the run)",
			r.Intended, what, r.Sent, r.Dropped)
		pct := 0.0
		if r.TargetRate > 0 {
			pct = 100 * r.AchievedRate / r.TargetRate
		}
		p.row("rate", "target %.1f/s, achieved %.1f/s (%.1f%%) over %.1fs", r.TargetRate, r.AchievedRate, pct, r.DurationSeconds)
	}
	q := r.Requests
	if q.Sent > 0 || r.Shape != "" {
		p.row("requests", "%d sent: %d 2xx (%d were 202, %d replays), %d non-2xx, %d network errors; error rate %.2f%%",
			q.Sent, q.OK, q.Accepted, q.Replayed, q.Non2xx, q.NetworkErrors, 100*q.ErrorRate)
		p.row("latency", "from the intended send time: %s", distLine(q.Latency))
		p.row("", "from the moment sent (vegeta's own measure, hides queueing): %s", distLine(q.ServiceTime))
		p.row("", "slower than %s: %d from the intended time, %d from the moment sent",
			fmtDur(fromMS(q.SlowOverMS)), q.SlowFromIntended, q.SlowFromSent)
		for _, s := range slices.Sorted(maps.Keys(q.Steps)) {
			p.row("", "%-8s %s", s, distLine(q.Steps[s]))
		}
		if len(q.ByStatus) > 0 {
			p.row("non-2xx", "%s (429: %d, 503: %d)", countLine(q.ByStatus), q.Status429, q.Status503)
		}
		if len(q.ByType) > 0 {
			p.row("problems", "%s", countLine(q.ByType))
		}
		if len(q.NetworkErrorKinds) > 0 {
			p.row("network", "%s", countLine(q.NetworkErrorKinds))
		}
	}
	if j := r.Journeys; j != nil {
		p.row("journeys", "%d started, %d never started, %d settled: %s; %d submits retried",
			j.Started, j.Dropped, j.Settled, countLine(j.Outcomes), j.SubmitRetries)
		p.row("", "longest line a donor was told: %d ahead, %d s to wait", j.MaxQueuePosition, j.MaxETASeconds)
		p.row("settle", "submit to settled: %s", distLine(j.SubmitToSettled))
		p.row("", "arrival to settled: %s", distLine(j.ArrivalToSettled))
	}
	if s := r.Stream; s != nil {
		p.row("stream", "%d subscribers: %d connected, %d failed to connect, %d dropped; %d events, %d changes, %d saw a change",
			s.Subscribers, s.Connected, s.FailedToConnect, s.Dropped, s.Events, s.Changes, s.SawChange)
		if len(s.ConnectFailures) > 0 {
			p.row("", "connect failures: %s", countLine(s.ConnectFailures))
		}
		p.row("", "total reached subscribers (updated_at to arrival): %s", distLine(s.Delivery))
		p.row("", "time to connect: %s", distLine(s.Connect))
	}
	if sv := r.Server; sv != nil {
		per := "no donation accepted"
		if sv.Accepted > 0 {
			per = fmt.Sprintf("%.1f µs per accepted donation", sv.CPUMicrosPerAccepted)
		}
		p.row("server", "%.3f s CPU for %d accepted (%d replays): %s", sv.CPUSeconds, sv.Accepted, sv.Replayed, per)
		p.row("", "RSS %s before, %s after, peak %s (%d samples)", mib(sv.RSSBefore), mib(sv.RSSAfter), mib(sv.PeakRSS), sv.Samples)
	} else if r.ServerUnavailable != "" {
		p.row("server", "cost not measured: %s", r.ServerUnavailable)
	}
	for _, w := range r.Warnings {
		p.row("warning", "%s", w)
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format+"\n", args...)
	}
}

func (p *printer) row(label, format string, args ...any) {
	p.f("%-9s "+format, append([]any{label}, args...)...)
}

func distLine(d Dist) string {
	if d.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)",
		fmtDur(d.P50), fmtDur(d.P90), fmtDur(d.P99), fmtDur(d.P999), fmtDur(d.Max), d.Count)
}

// countLine lists counts largest first, then by name.
func countLine(m map[string]uint64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// fmtDur rounds a duration to three significant figures or so.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
