package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/loadgen"
)

// Defaults of `floodgate load` that depend on the scenario or the shape.
const (
	loadDefaultRate       = 100.0
	loadDefaultStreamRate = 10.0
	loadDefaultDuration   = 10 * time.Second
	loadDefaultSpikeRamp  = 3 * time.Second
)

// runLoadCmd is `floodgate load`: open-model load against a running
// floodgate, with a report that measures latency from each request's
// intended send time and accounts for every request. Broken thresholds
// exit 1, one line each; a bad command line exits 2. Warnings (a run that
// measured the server's card-testing limits rather than the server) are
// in the report and on stderr, and leave the exit code to the thresholds.
func runLoadCmd(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: floodgate load [flags]

Sends open-model load to a floodgate server (arrivals do not wait for
answers) and reports latency measured from each request's intended send
time, every non-2xx by status and problem type, network errors, requests
that could not be sent in time, and the server's CPU and memory from its
/metrics. Thresholds make the exit code 1. A run that the server's
card-testing limits mostly refused (429 rate_limited: they see the
generator as one donor) is flagged with a warning, in the report and on
stderr, that says how to turn them off on the server under test.

Flags:
`)
		fs.PrintDefaults()
	}
	var (
		baseURL     = fs.String("url", "http://localhost:8080", "the server's base `URL`")
		metricsURL  = fs.String("metrics", "", "the server's /metrics `URL` (its FLOODGATE_METRICS_ADDR; default port 9464 on the --url host)")
		scenario    = fs.String("scenario", "donate", "donate, journey or stream (raffle is not available yet)")
		shape       = fs.String("shape", "constant", "arrivals: constant, ramp or spike")
		rate        = fs.Float64("rate", loadDefaultRate, "arrivals per second: the constant rate, the ramp's end, the spike's peak (stream: background donations, default 10, 0 for none)")
		rateFrom    = fs.Float64("rate-from", 0, "ramp: the rate per second at the start")
		ramp        = fs.Duration("ramp", 0, "ramp: time to climb (default: the whole run); spike: time from base to peak (default 3s)")
		spikeBase   = fs.Float64("base", 1, "spike: the rate per second before and after the spike")
		lead        = fs.Duration("lead", 5*time.Second, "spike: time at the base rate before the ask")
		hold        = fs.Duration("hold", 10*time.Second, "spike: time at the peak")
		decay       = fs.Duration("decay", 10*time.Second, "spike: time constant of the exponential decay back to the base")
		duration    = fs.Duration("duration", loadDefaultDuration, "length of the run; bounds every shape (spike: default lead+ramp+hold+3*decay)")
		maxWorkers  = fs.Int("max-workers", 1000, "requests in flight at most (journey: journeys in progress)")
		timeout     = fs.Duration("timeout", 10*time.Second, "time limit of one HTTP request")
		campaign    = fs.String("campaign", "demo", "the campaign's `id`")
		subscribers = fs.Int("subscribers", 100, "stream: live-total subscribers to hold open")
		settle      = fs.Duration("settle-timeout", time.Minute, "journey: how long a donor waits from submit to a settled status")
		cards       = fs.String("cards", loadgen.DefaultCards, "the card mix, a comma-separated `list` of name[=weight] (visa, mastercard, declined, any pm_... id)")
		seed        = fs.Uint64("seed", 0, "seed for amounts, names and cards (0: random, reported)")
		asJSON      = fs.Bool("json", false, "print the report as JSON on stdout")
		quiet       = fs.Bool("quiet", false, "no progress line on stderr")
		maxP99      = fs.Duration("max-p99", 0, "threshold: highest p99 latency (from the intended send time)")
		maxErrRate  = fs.Float64("max-error-rate", 0, "threshold: highest (non-2xx + network errors) / sent, a `fraction`")
		minRate     = fs.Float64("min-rate", 0, "threshold: lowest achieved rate as a `fraction` of the target")
		maxDropped  = fs.Uint64("max-dropped", 0, "threshold: most arrivals unsent (stream: plus subscribers failed or dropped)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{"load: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("load takes no arguments, got %q", fs.Args())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := loadgen.Options{URL: *baseURL, MetricsURL: *metricsURL, Scenario: *scenario, MaxWorkers: *maxWorkers, Timeout: *timeout,
		Campaign: *campaign, Seed: *seed, Subscribers: *subscribers, SettleTimeout: *settle}
	// The raffle answer comes before any question about rates.
	if o.Scenario == "raffle" {
		return usageError{loadgen.ErrNoRaffles.Error()}
	}
	if *shape != "constant" && *shape != "ramp" && *shape != "spike" {
		return usageError{fmt.Sprintf("shape %q: unknown (valid: constant, ramp, spike)", *shape)}
	}
	if o.Scenario == "stream" && !set["rate"] {
		*rate = loadDefaultStreamRate
	}
	if *shape == "spike" && !set["ramp"] {
		*ramp = loadDefaultSpikeRamp
	}
	if *shape == "spike" && !set["duration"] {
		*duration = *lead + *ramp + *hold + 3**decay
	}
	for _, c := range []struct {
		name string
		v    float64
	}{{"rate", *rate}, {"rate-from", *rateFrom}, {"base", *spikeBase}, {"max-error-rate", *maxErrRate}, {"min-rate", *minRate}} {
		if math.IsNaN(c.v) || math.IsInf(c.v, 0) {
			return usageError{fmt.Sprintf("%s %v: not a number", c.name, c.v)}
		}
	}
	switch {
	case *rate < 0 || (*rate == 0 && o.Scenario != "stream"):
		return usageError{fmt.Sprintf("rate %g: want arrivals per second above 0", *rate)}
	case *duration <= 0:
		return usageError{fmt.Sprintf("duration %s: want a duration above 0", *duration)}
	case *rateFrom < 0 || *spikeBase < 0:
		return usageError{"rate-from and base: want rates of 0 or more"}
	case *ramp < 0 || *lead < 0 || *hold < 0 || *decay < 0:
		return usageError{"ramp, lead, hold and decay: want durations of 0 or more"}
	case *shape == "spike" && *spikeBase > *rate:
		return usageError{fmt.Sprintf("base %g is above the peak --rate %g", *spikeBase, *rate)}
	case set["max-error-rate"] && (*maxErrRate < 0 || *maxErrRate > 1):
		return usageError{fmt.Sprintf("max-error-rate %g: want a fraction from 0 to 1", *maxErrRate)}
	case set["min-rate"] && (*minRate <= 0 || *minRate > 1):
		return usageError{fmt.Sprintf("min-rate %g: want a fraction above 0, at most 1", *minRate)}
	case set["max-p99"] && *maxP99 <= 0:
		return usageError{fmt.Sprintf("max-p99 %s: want a duration above 0", *maxP99)}
	}
	if *rate > 0 {
		switch *shape {
		case "constant":
			o.Shape = loadgen.Constant{PerSecond: *rate, Duration: *duration}
		case "ramp":
			o.Shape = loadgen.Ramp{From: *rateFrom, To: *rate, Over: *ramp, Duration: *duration}
		case "spike":
			o.Shape = loadgen.Spike{Base: *spikeBase, Peak: *rate, Lead: *lead, Ramp: *ramp, Hold: *hold,
				Decay: *decay, Duration: *duration}
		}
	} else {
		o.Hold = *duration
	}
	var err error
	if o.Cards, err = loadgen.ParseCards(*cards); err != nil {
		return usageError{"cards: " + err.Error()}
	}
	if err := o.Validate(); err != nil {
		return usageError{err.Error()}
	}
	th := loadgen.Thresholds{MaxP99: *maxP99}
	if set["max-error-rate"] {
		th.MaxErrorRate = maxErrRate
	}
	if set["min-rate"] {
		th.MinRate = minRate
	}
	if set["max-dropped"] {
		th.MaxDropped = maxDropped
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = env.Stderr
	if *quiet {
		progress = nil
	}
	rep, err := loadgen.Run(ctx, o, progress)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(env.Stdout)
	}
	if err != nil {
		return err
	}
	// A warning goes to stderr too: a run whose report is read by a
	// script, or whose thresholds were not set, still tells the person
	// at the terminal. It never changes the exit code.
	for _, w := range rep.Warnings {
		fmt.Fprintln(env.Stderr, "floodgate: warning:", w)
	}
	broken := rep.Check(th)
	if len(broken) == 0 {
		return nil
	}
	// One line per broken threshold: all but the last here, the last as
	// the error that Run prints and turns into exit code 1.
	for _, line := range broken[:len(broken)-1] {
		fmt.Fprintln(env.Stderr, "floodgate: threshold:", line)
	}
	return errors.New("threshold: " + broken[len(broken)-1])
}
