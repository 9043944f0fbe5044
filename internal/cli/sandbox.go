package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/floodgate/floodgate/internal/sandbox"
)

// runSandbox runs the Stripe-compatible sandbox on its own, as a separate
// process a rehearsal (or a crash test) can keep alive while floodgate
// itself is killed and restarted.
func runSandbox(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var (
		opts     sandbox.Options
		addr     = fs.String("addr", "127.0.0.1:12111", "listen address `host:port`")
		logLevel = fs.String("log-level", "info", "debug, info, warn or error")
	)
	opts.RateLimit = sandbox.DefaultRateLimit
	fs.Float64Var(&opts.RateLimit, "rate-limit", opts.RateLimit, "API requests per second before 429 rate_limit (0: none)")
	fs.Float64Var(&opts.EndpointRateLimit, "endpoint-rate-limit", 0, "requests per second per endpoint before 429 (0: none)")
	fs.DurationVar(&opts.Latency, "latency", 0, "latency added to every API request")
	fs.DurationVar(&opts.LatencyJitter, "latency-jitter", 0, "random extra latency, up to this much")
	fs.DurationVar(&opts.ProcessingTime, "processing-time", 0, "how long a write executes (the same key answers 409 meanwhile)")
	fs.Float64Var(&opts.FailRate, "fail-rate", 0, "probability of a 500 before a charge (stored under the idempotency key)")
	fs.Float64Var(&opts.LoseRate, "lose-rate", 0, "probability that the answer is lost after a charge")
	fs.DurationVar(&opts.IdempotencyRetention, "idempotency-retention", sandbox.DefaultIdempotencyRetention, "how long idempotency keys are kept")
	fs.StringVar(&opts.WebhookURL, "webhook-url", "", "URL that receives signed webhook events")
	fs.StringVar(&opts.WebhookSecret, "webhook-secret", os.Getenv("STRIPE_WEBHOOK_SECRET"), "whsec_ secret that signs webhook events (default $STRIPE_WEBHOOK_SECRET)")
	fs.StringVar(&opts.WebhookAPIVersion, "webhook-api-version", "", "api_version of webhook events (default: the pinned Stripe API version)")
	fs.Float64Var(&opts.WebhookDuplicateRate, "webhook-duplicate-rate", 0, "probability that an event is delivered twice")
	fs.BoolVar(&opts.WebhookShuffle, "webhook-shuffle", false, "deliver waiting events in random order")
	fs.StringVar(&opts.PublicURL, "public-url", "", "the sandbox's URL as a browser reaches it (3-D Secure links)")
	fs.StringVar(&opts.StatePath, "state", "", "journal `file` that keeps state across restarts (default: memory only)")
	fs.Uint64Var(&opts.Seed, "seed", 0, "seed for fault randomness (0: random)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("sandbox takes no arguments, got %q", fs.Args())}
	}
	logger := newLogger(env.Stderr, *logLevel, "text")
	opts.Logger = logger
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return sandbox.ListenAndServe(ctx, *addr, opts, func(a net.Addr) {
		fmt.Fprintf(env.Stdout, "sandbox listening on http://%s (ledger: /_sandbox/ledger)\n", a)
	})
}
