package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scenarios are the names Options.Scenario takes.
var Scenarios = []string{"donate", "journey", "stream", "raffle"}

// ErrNoRaffles is the answer to the raffle scenario: floodgate has no
// raffles yet, and a load test must not pretend to enter one.
var ErrNoRaffles = errors.New("scenario raffle: raffle entries are not available in this version of floodgate")

// Options configure a run. Every bound is explicit; Validate refuses
// nonsense before anything is sent.
type Options struct {
	// URL is the server's base URL (http://host:port).
	URL string
	// MetricsURL is where the server's /metrics is read (floodgate serves
	// it apart from the public port); "" means MetricsURLFor(URL).
	MetricsURL string
	// Scenario is donate, journey or stream (raffle is refused).
	Scenario string
	// Shape paces the arrivals: donations (donate), journeys (journey),
	// background donations (stream; nil for none, then Hold applies).
	Shape Shape
	// MaxWorkers bounds requests in flight (donate, stream's load) or
	// journeys in progress.
	MaxWorkers int
	// Timeout bounds one HTTP request (a stream's headers, for stream).
	Timeout time.Duration
	// Campaign is the campaign's id.
	Campaign string
	// Cards is the card mix; nil means DefaultCards.
	Cards []Card
	// Seed makes amounts, names and cards repeatable; 0 picks one (the
	// report says which). Idempotency keys are unique per run whatever
	// the seed, so that a second run never replays the first.
	Seed uint64
	// Subscribers is the number of live-total streams (stream).
	Subscribers int
	// Hold is how long a stream run without a Shape holds its streams.
	Hold time.Duration
	// SettleTimeout bounds a journey from its POST to a settled status.
	SettleTimeout time.Duration
	// ProgressEvery is the progress line's period; 0 means a second.
	ProgressEvery time.Duration
}

// DefaultMetricsPort is the port of floodgate's default metrics address
// (FLOODGATE_METRICS_ADDR).
const DefaultMetricsPort = "9464"

// MetricsURLFor is where a floodgate at base serves its metrics by
// default: the default metrics port on the same host.
func MetricsURLFor(base string) string {
	u, err := url.Parse(base)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	return "http://" + net.JoinHostPort(u.Hostname(), DefaultMetricsPort) + "/metrics"
}

// Validate refuses options that cannot make a meaningful run, naming the
// setting in one line.
func (o *Options) Validate() error {
	u, err := url.Parse(o.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("url %q: want http://host:port or https://host:port", o.URL)
	case o.MetricsURL != "" && !isHTTPURL(o.MetricsURL):
		return fmt.Errorf("metrics %q: want http://host:port/metrics", o.MetricsURL)
	case o.Scenario == "raffle":
		return ErrNoRaffles
	case !slices.Contains(Scenarios, o.Scenario):
		return fmt.Errorf("scenario %q: unknown (valid: %s)", o.Scenario, strings.Join(Scenarios, ", "))
	case o.Shape == nil && o.Scenario != "stream":
		return fmt.Errorf("scenario %s needs an arrival shape", o.Scenario)
	case o.Shape == nil && o.Hold <= 0:
		return errors.New("hold: a stream without load needs a duration above 0")
	case o.MaxWorkers < 1:
		return fmt.Errorf("max-workers %d: want at least 1", o.MaxWorkers)
	case o.Timeout <= 0:
		return fmt.Errorf("timeout %s: want a duration above 0", o.Timeout)
	case o.Campaign == "":
		return errors.New("campaign: empty")
	case o.Scenario == "stream" && o.Subscribers < 1:
		return fmt.Errorf("subscribers %d: the stream scenario needs at least 1", o.Subscribers)
	case o.Scenario == "journey" && o.SettleTimeout <= 0:
		return fmt.Errorf("settle-timeout %s: want a duration above 0", o.SettleTimeout)
	}
	if o.Shape != nil {
		if o.Shape.Length() <= 0 {
			return fmt.Errorf("duration %s: want a duration above 0", o.Shape.Length())
		}
		if o.Shape.Total() == 0 {
			return fmt.Errorf("shape %s intends no request at all: raise the rate or the duration", o.Shape)
		}
	}
	return nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Run runs the scenario and reports. It returns an error only when the
// run could not take place (bad options, the campaign unreadable); a
// server that fails under load is what the report is for. Progress, when
// not nil, gets a line a second. Canceling ctx ends the run early and
// still reports what happened until then.
func Run(ctx context.Context, o Options, progress io.Writer) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	cards := o.Cards
	if cards == nil {
		cards, _ = ParseCards(DefaultCards)
	}
	if o.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		// At most 53 bits, so that the seed survives a JSON reader that
		// keeps numbers as float64.
		o.Seed = binary.LittleEndian.Uint64(b[:])>>11 | 1
	}
	base := strings.TrimRight(o.URL, "/")
	tr := newTransport(o.MaxWorkers)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: o.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	camp, err := fetchCampaign(ctx, hc, base, o.Campaign)
	if err != nil {
		return nil, err
	}
	if camp.State != "" && camp.State != "open" {
		fmt.Fprintf(progress, "note: campaign %s is %s: donations will be refused\n", o.Campaign, camp.State)
	}
	d := newDonors(camp, cards, o.Seed)

	r := &Report{Scenario: o.Scenario, URL: base, Campaign: o.Campaign, Seed: o.Seed, MaxWorkers: o.MaxWorkers,
		Started: time.Now().UTC().Truncate(time.Millisecond)}
	if o.Shape != nil {
		r.Shape = o.Shape.String()
	}

	// The server's cost is read over its own connections, so that a
	// reading never waits behind the load's.
	mtr := newTransport(1)
	defer mtr.CloseIdleConnections()
	mc := &http.Client{Transport: mtr}
	metricsURL := o.MetricsURL
	if metricsURL == "" {
		metricsURL = MetricsURLFor(base)
	}
	r.MetricsURL = metricsURL
	before, merr := scrape(ctx, mc, metricsURL)
	var sampler *rssSampler
	if merr != nil {
		r.ServerUnavailable = merr.Error()
	} else {
		sampler = sampleRSS(ctx, mc, metricsURL, before)
	}

	col := newCollector()
	p := &progressLine{w: progress, col: col, shape: o.Shape, sent: func() uint64 { return col.snapshot().sent }}
	began := time.Now()
	var arr arrivals
	switch o.Scenario {
	case "donate":
		stop := p.run(o.ProgressEvery)
		arr = attack(ctx, o, base, d, col, p.setStart)
		stop()
	case "journey":
		j := newJourneys(o, base, hc, d, col)
		p.sent, p.extra = j.started.Load, j.progress
		stop := p.run(o.ProgressEvery)
		arr, r.Journeys = j.run(ctx, p.setStart)
		stop()
	case "stream":
		s := newStreamer(o, base)
		defer s.hc.CloseIdleConnections()
		p.extra = s.progress
		stop := p.run(o.ProgressEvery)
		var load func(context.Context) arrivals
		if o.Shape != nil {
			load = func(ctx context.Context) arrivals { return attack(ctx, o, base, d, col, p.setStart) }
		}
		arr, r.Stream = s.run(ctx, load)
		stop()
	}
	r.ElapsedSeconds = time.Since(began).Seconds()
	r.Interrupted = arr.interrupted || ctx.Err() != nil
	r.DurationSeconds = arr.window.Seconds()
	r.Intended, r.Sent = arr.intended, arr.sent
	r.Dropped = arr.intended - min(arr.sent, arr.intended)
	if w := arr.window.Seconds(); w > 0 {
		r.TargetRate = float64(arr.intended) / w
		r.AchievedRate = float64(arr.sent) / w
	}
	r.Requests = col.requests()
	r.warn()

	if sampler != nil {
		// Read the cost even after an interrupt: it is part of the truth.
		after, err := scrape(context.WithoutCancel(ctx), mc, metricsURL)
		if err != nil {
			sampler.finish(before)
			r.ServerUnavailable = "after the run: " + err.Error()
		} else {
			peak, n := sampler.finish(after)
			r.Server = serverReport(before, after, peak, n)
		}
	}
	return r, nil
}

// progressLine prints, once a period, how the run is going.
type progressLine struct {
	w     io.Writer
	col   *collector
	shape Shape
	sent  func() uint64 // arrivals started so far
	extra func() string // the scenario's own words, or nil

	mu    sync.Mutex
	start time.Time
}

// setStart tells the line when the arrivals began (for the target rate
// of the moment).
func (p *progressLine) setStart(t time.Time) {
	p.mu.Lock()
	p.start = t
	p.mu.Unlock()
}

// run prints until the returned stop is called.
func (p *progressLine) run(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		var last uint64
		lastAt := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				sent := p.sent()
				rate := float64(sent-last) / now.Sub(lastAt).Seconds()
				last, lastAt = sent, now
				p.print(now, sent, rate)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (p *progressLine) print(now time.Time, sent uint64, rate float64) {
	p.mu.Lock()
	start := p.start
	p.mu.Unlock()
	s := p.col.snapshot()
	line := "load  starting  "
	if !start.IsZero() && p.shape != nil {
		el := now.Sub(start)
		line = fmt.Sprintf("load %5.1fs  sent %d  rate %.0f/s (target %.0f/s)  ", el.Seconds(), sent, rate, p.shape.Rate(min(el, p.shape.Length())))
	}
	line += fmt.Sprintf("requests %d  p99 %s  errors %d", s.sent, fmtDur(s.p99), s.errors)
	if p.extra != nil {
		line += "  " + p.extra()
	}
	fmt.Fprintln(p.w, line)
}
