package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// valid returns the defaults with a data directory a test owns, which
// Validate accepts.
func valid(tb testing.TB) *Config {
	tb.Helper()
	c := Defaults()
	c.DataDir = tb.TempDir()
	return c
}

func TestValidateDefaults(t *testing.T) {
	t.Parallel()
	if err := valid(t).Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}

// TestValidate has one row per rule: the change that breaks it and the
// whole error line, or "" for a change at the edge of a rule that must
// still be accepted.
func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		// Zero and negative bounds, one row per bound.
		{"batch max zero", func(c *Config) { c.BatchMax = 0 },
			"FLOODGATE_BATCH_MAX (--batch-max) = 0: must be at least 1"},
		{"batch max negative", func(c *Config) { c.BatchMax = -1 },
			"FLOODGATE_BATCH_MAX (--batch-max) = -1: must be at least 1"},
		{"batch wait zero", func(c *Config) { c.BatchWait = 0 },
			"FLOODGATE_BATCH_WAIT (--batch-wait) = 0s: must be longer than 0s"},
		{"ingest queue zero", func(c *Config) { c.IngestQueue = 0 },
			"FLOODGATE_INGEST_QUEUE (--ingest-queue) = 0: must be at least 1"},
		{"read conns zero", func(c *Config) { c.ReadConns = 0 },
			"FLOODGATE_READ_CONNS (--read-conns) = 0: must be at least 1"},
		{"db max conns zero", func(c *Config) { c.DBMaxConns = 0 },
			"FLOODGATE_DB_MAX_CONNS (--db-max-conns) = 0: must be at least 1"},
		{"max conns zero", func(c *Config) { c.MaxConns = 0 },
			"FLOODGATE_MAX_CONNS (--max-conns) = 0: must be at least 1"},
		{"http read timeout negative", func(c *Config) { c.HTTPReadTimeout = -time.Second },
			"FLOODGATE_HTTP_READ_TIMEOUT (--http-read-timeout) = -1s: must be longer than 0s"},
		{"http idle timeout zero", func(c *Config) { c.HTTPIdleTimeout = 0 },
			"FLOODGATE_HTTP_IDLE_TIMEOUT (--http-idle-timeout) = 0s: must be longer than 0s"},
		{"shutdown timeout zero", func(c *Config) { c.ShutdownTimeout = 0 },
			"FLOODGATE_SHUTDOWN_TIMEOUT (--shutdown-timeout) = 0s: must be longer than 0s"},
		{"dispatch workers zero", func(c *Config) { c.DispatchWorkers = 0 },
			"FLOODGATE_DISPATCH_WORKERS (--dispatch-workers) = 0: must be at least 1"},
		{"dispatch queue zero", func(c *Config) { c.DispatchQueue = 0 },
			"FLOODGATE_DISPATCH_QUEUE (--dispatch-queue) = 0: must be at least 1"},
		{"dispatch claim zero", func(c *Config) { c.DispatchClaim = 0 },
			"FLOODGATE_DISPATCH_CLAIM (--dispatch-claim) = 0: must be at least 1"},
		{"provider timeout zero", func(c *Config) { c.ProviderTimeout = 0 },
			"FLOODGATE_PROVIDER_TIMEOUT (--provider-timeout) = 0s: must be longer than 0s"},
		{"lease zero", func(c *Config) { c.Lease = 0 },
			"FLOODGATE_LEASE (--lease) = 0s: must be longer than 0s"},
		{"sse max subscribers zero", func(c *Config) { c.SSEMaxSubscribers = 0 },
			"FLOODGATE_SSE_MAX_SUBSCRIBERS (--sse-max-subscribers) = 0: must be at least 1"},
		{"sse heartbeat zero", func(c *Config) { c.SSEHeartbeat = 0 },
			"FLOODGATE_SSE_HEARTBEAT (--sse-heartbeat) = 0s: must be longer than 0s"},
		{"totals interval zero", func(c *Config) { c.TotalsInterval = 0 },
			"FLOODGATE_TOTALS_INTERVAL (--totals-interval) = 0s: must be longer than 0s"},
		{"action timeout zero", func(c *Config) { c.ActionTimeout = 0 },
			"FLOODGATE_ACTION_TIMEOUT (--action-timeout) = 0s: must be longer than 0s"},
		{"provider rate zero", func(c *Config) { c.ProviderRate = 0 },
			"FLOODGATE_PROVIDER_RATE (--provider-rate) = 0: must be greater than 0"},
		{"provider global rate negative", func(c *Config) { c.ProviderGlobalRate = -5 },
			"FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = -5: must be greater than 0"},
		{"lookup share zero", func(c *Config) { c.LookupShare = 0 },
			"FLOODGATE_LOOKUP_SHARE (--lookup-share) = 0: must be greater than 0 and at most 1"},
		{"lookup share above one", func(c *Config) { c.LookupShare = 1.5 },
			"FLOODGATE_LOOKUP_SHARE (--lookup-share) = 1.5: must be greater than 0 and at most 1"},
		{"address decline limit zero", func(c *Config) { c.AddressDeclineLimit = 0 },
			"FLOODGATE_ADDRESS_DECLINE_LIMIT (--address-decline-limit) = 0: must be at least 1"},
		{"PROXY protocol with no trusted proxy", func(c *Config) { c.ProxyProtocol = true },
			"FLOODGATE_PROXY_PROTOCOL (--proxy-protocol) = true: needs FLOODGATE_TRUSTED_PROXIES (--trusted-proxies) = \"\": a PROXY header is believed only from a trusted proxy"},
		{"PROXY protocol from trusted proxies", func(c *Config) { c.ProxyProtocol, c.TrustedProxies = true, "10.0.0.0/8" }, ""},
		{"sandbox rate limit zero", func(c *Config) { c.SandboxRateLimit = 0 },
			"FLOODGATE_SANDBOX_RATE_LIMIT (--sandbox-rate-limit) = 0: must be greater than 0"},
		{"sandbox retention zero", func(c *Config) { c.SandboxIdempotencyRetention = 0 },
			"FLOODGATE_SANDBOX_IDEMPOTENCY_RETENTION (--sandbox-idempotency-retention) = 0s: must be longer than 0s"},
		{"sandbox latency negative", func(c *Config) { c.SandboxLatency = -time.Millisecond },
			"FLOODGATE_SANDBOX_LATENCY (--sandbox-latency) = -1ms: must not be negative"},
		{"sandbox jitter negative", func(c *Config) { c.SandboxLatencyJitter = -time.Millisecond },
			"FLOODGATE_SANDBOX_LATENCY_JITTER (--sandbox-latency-jitter) = -1ms: must not be negative"},
		{"sandbox latency zero is fine", func(c *Config) { c.SandboxLatency, c.SandboxLatencyJitter = 0, 0 }, ""},

		// Probabilities.
		{"fail rate one", func(c *Config) { c.SandboxFailRate = 1 },
			"FLOODGATE_SANDBOX_FAIL_RATE (--sandbox-fail-rate) = 1: must be at least 0 and less than 1"},
		{"fail rate negative", func(c *Config) { c.SandboxFailRate = -0.1 },
			"FLOODGATE_SANDBOX_FAIL_RATE (--sandbox-fail-rate) = -0.1: must be at least 0 and less than 1"},
		{"lose rate above one", func(c *Config) { c.SandboxLoseRate = 1.5 },
			"FLOODGATE_SANDBOX_LOSE_RATE (--sandbox-lose-rate) = 1.5: must be at least 0 and less than 1"},
		{"rates just under one", func(c *Config) { c.SandboxFailRate, c.SandboxLoseRate = 0.99, 0.5 }, ""},

		// Words from a fixed list.
		{"unknown payments", func(c *Config) { c.Payments = "paypal" },
			`FLOODGATE_PAYMENTS (--payments) = "paypal": must be sandbox or stripe`},
		{"unknown log level", func(c *Config) { c.LogLevel = "verbose" },
			`FLOODGATE_LOG_LEVEL (--log-level) = "verbose": must be debug, info, warn or error`},
		{"log level is case-sensitive", func(c *Config) { c.LogLevel = "INFO" },
			`FLOODGATE_LOG_LEVEL (--log-level) = "INFO": must be debug, info, warn or error`},
		{"unknown log format", func(c *Config) { c.LogFormat = "logfmt" },
			`FLOODGATE_LOG_FORMAT (--log-format) = "logfmt": must be text or json`},

		// Store URLs.
		{"unknown store scheme", func(c *Config) { c.StoreURL = "mysql://db/fg" },
			`FLOODGATE_STORE_URL (--store) = "mysql://db/fg": unknown store; valid are sqlite, sqlite:relative.db, sqlite:///abs/path.db, postgres://... or postgresql://...`},
		{"bare postgres", func(c *Config) { c.StoreURL = "postgres" },
			`FLOODGATE_STORE_URL (--store) = "postgres": unknown store; valid are sqlite, sqlite:relative.db, sqlite:///abs/path.db, postgres://... or postgresql://...`},
		{"unknown store masks its password", func(c *Config) { c.StoreURL = "mysql://fg:hunter2@db/fg" },
			`FLOODGATE_STORE_URL (--store) = "mysql://fg:********@db/fg": unknown store; valid are sqlite, sqlite:relative.db, sqlite:///abs/path.db, postgres://... or postgresql://...`},
		{"sqlite with a host", func(c *Config) { c.StoreURL = "sqlite://fg.db" },
			`FLOODGATE_STORE_URL (--store) = "sqlite://fg.db": a sqlite URL names no host: write sqlite:///abs/path.db or sqlite:relative.db`},
		{"sqlite without a file", func(c *Config) { c.StoreURL = "sqlite:" },
			`FLOODGATE_STORE_URL (--store) = "sqlite:": names no database file`},
		{"sqlite with a query", func(c *Config) { c.StoreURL = "sqlite:fg.db?mode=memory" },
			`FLOODGATE_STORE_URL (--store) = "sqlite:fg.db?mode=memory": a sqlite URL takes no query or fragment`},
		{"sqlite relative", func(c *Config) { c.StoreURL = "sqlite:night.db" }, ""},
		{"sqlite absolute", func(c *Config) { c.StoreURL = "sqlite:///var/lib/floodgate/fg.db" }, ""},
		{"postgres", func(c *Config) {
			c.StoreURL, c.StripeAPIBase = "postgres://fg:secret@db:5432/fg?sslmode=verify-full", "http://127.0.0.1:12111"
		}, ""},
		{"postgresql", func(c *Config) { c.StoreURL, c.StripeAPIBase = "postgresql://db/fg", "http://127.0.0.1:12111" }, ""},
		{"postgres with the in-process sandbox", func(c *Config) { c.StoreURL = "postgresql://db/fg" },
			`FLOODGATE_STORE_URL (--store) = "postgresql://db/fg": is PostgreSQL (several nodes) with the in-process sandbox: run ` + "`floodgate sandbox`" + ` once and point every node at it with FLOODGATE_STRIPE_API_BASE (--stripe-api-base) = ""`},
		{"key retention at the sandbox's", func(c *Config) { c.KeyRetention, c.SandboxIdempotencyRetention = time.Hour, time.Hour },
			"FLOODGATE_KEY_RETENTION (--key-retention) = 1h: must be shorter than FLOODGATE_SANDBOX_IDEMPOTENCY_RETENTION (--sandbox-idempotency-retention) = 1h, or a resent key could charge twice"},
		{"key retention beyond Stripe's", func(c *Config) { c.Payments, c.StripeKey, c.KeyRetention = "stripe", "sk_test_abc", 25*time.Hour },
			"FLOODGATE_KEY_RETENTION (--key-retention) = 25h: must not exceed 24h, the least Stripe keeps an idempotency key"},

		// Addresses and URLs.
		{"addr without port", func(c *Config) { c.Addr = "localhost" },
			`FLOODGATE_ADDR (--addr) = "localhost": not host:port (address localhost: missing port in address)`},
		{"addr empty", func(c *Config) { c.Addr = "" },
			`FLOODGATE_ADDR (--addr) = "": not host:port (missing port in address)`},
		{"addr ipv6", func(c *Config) { c.Addr = "[::1]:0" }, ""},
		{"public url relative", func(c *Config) { c.PublicURL = "/donate" },
			`FLOODGATE_PUBLIC_URL (--public-url) = "/donate": must be an absolute http:// or https:// URL`},
		{"public url other scheme", func(c *Config) { c.PublicURL = "ftp://example.org" },
			`FLOODGATE_PUBLIC_URL (--public-url) = "ftp://example.org": must be an absolute http:// or https:// URL`},
		{"public url without host", func(c *Config) { c.PublicURL = "https://" },
			`FLOODGATE_PUBLIC_URL (--public-url) = "https://": must be an absolute http:// or https:// URL`},
		{"public url", func(c *Config) { c.PublicURL = "https://give.example.ie/" }, ""},
		{"api base not a url", func(c *Config) { c.StripeAPIBase = "localhost:12111" },
			`FLOODGATE_STRIPE_API_BASE (--stripe-api-base) = "localhost:12111": must be an absolute http:// or https:// URL`},

		// Queues and what they feed.
		{"batch larger than queue", func(c *Config) { c.BatchMax, c.IngestQueue = 1024, 512 },
			"FLOODGATE_BATCH_MAX (--batch-max) = 1024: must not exceed FLOODGATE_INGEST_QUEUE (--ingest-queue) = 512, the queue a batch is taken from"},
		{"batch equal to queue", func(c *Config) { c.BatchMax, c.IngestQueue = 512, 512 }, ""},
		{"claim larger than dispatch queue", func(c *Config) { c.DispatchClaim, c.DispatchQueue = 65, 64 },
			"FLOODGATE_DISPATCH_CLAIM (--dispatch-claim) = 65: must not exceed FLOODGATE_DISPATCH_QUEUE (--dispatch-queue) = 64, the queue a claim is held in"},
		{"claim equal to dispatch queue", func(c *Config) { c.DispatchClaim, c.DispatchQueue = 64, 64 }, ""},
		{"subscribers equal to connections", func(c *Config) { c.SSEMaxSubscribers, c.MaxConns = 100, 100 },
			"FLOODGATE_SSE_MAX_SUBSCRIBERS (--sse-max-subscribers) = 100: must be less than FLOODGATE_MAX_CONNS (--max-conns) = 100, or subscribers could take every connection and leave none for donations"},
		{"subscribers one under connections", func(c *Config) { c.SSEMaxSubscribers, c.MaxConnsPerClient, c.MaxConns = 99, 10, 100 }, ""},
		{"connections per client negative", func(c *Config) { c.MaxConnsPerClient = -1 },
			"FLOODGATE_MAX_CONNS_PER_CLIENT (--max-conns-per-client) = -1: must not be negative (0 turns the limit off)"},
		{"connections per client equal to connections", func(c *Config) { c.MaxConnsPerClient, c.SSEMaxSubscribers, c.MaxConns = 100, 10, 100 },
			"FLOODGATE_MAX_CONNS_PER_CLIENT (--max-conns-per-client) = 100: must be less than FLOODGATE_MAX_CONNS (--max-conns) = 100, or one client could hold every connection (0 turns the cap off)"},
		{"connections per client one under connections", func(c *Config) { c.MaxConnsPerClient, c.SSEMaxSubscribers, c.MaxConns = 99, 10, 100 }, ""},
		{"connections per client off", func(c *Config) { c.MaxConnsPerClient, c.SSEMaxSubscribers, c.MaxConns = 0, 10, 100 }, ""},

		// Leases.
		{"lease equal to provider timeout", func(c *Config) { c.Lease, c.ProviderTimeout = 30*time.Second, 30*time.Second },
			"FLOODGATE_LEASE (--lease) = 30s: must be longer than FLOODGATE_PROVIDER_TIMEOUT (--provider-timeout) = 30s, or another dispatcher could resume a gift in the middle of a call"},
		{"lease shorter than provider timeout", func(c *Config) { c.Lease = 10 * time.Second },
			"FLOODGATE_LEASE (--lease) = 10s: must be longer than FLOODGATE_PROVIDER_TIMEOUT (--provider-timeout) = 30s, or another dispatcher could resume a gift in the middle of a call"},

		// Rates.
		{"provider rate above global rate", func(c *Config) { c.ProviderRate, c.ProviderGlobalRate = 15, 10 },
			"FLOODGATE_PROVIDER_RATE (--provider-rate) = 15: must not exceed FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = 10, which PaymentIntent requests are part of"},
		{"in-process sandbox: provider rate above its limit", func(c *Config) { c.ProviderRate, c.ProviderGlobalRate, c.SandboxRateLimit = 30, 40, 25 },
			"FLOODGATE_PROVIDER_RATE (--provider-rate) = 30: must not exceed FLOODGATE_SANDBOX_RATE_LIMIT (--sandbox-rate-limit) = 25, or the in-process sandbox answers 429"},
		{"in-process sandbox: global rate above its limit", func(c *Config) { c.ProviderGlobalRate, c.SandboxRateLimit = 30, 25 },
			"FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = 30: must not exceed FLOODGATE_SANDBOX_RATE_LIMIT (--sandbox-rate-limit) = 25, or the in-process sandbox answers 429"},
		{"in-process sandbox: rates at its limit", func(c *Config) { c.ProviderRate, c.ProviderGlobalRate, c.SandboxRateLimit = 25, 25, 25 }, ""},
		{"external sandbox: its own limit", func(c *Config) {
			c.StripeAPIBase, c.ProviderRate, c.ProviderGlobalRate = "http://127.0.0.1:12111", 500, 1000
		}, ""},

		// Keys and payments.
		{"stripe without a key", func(c *Config) { c.Payments = "stripe" },
			`STRIPE_SECRET_KEY (--stripe-key) = "": is required with FLOODGATE_PAYMENTS (--payments) = "stripe"`},
		{"live key in the sandbox", func(c *Config) { c.StripeKey = "sk_live_abc" },
			`STRIPE_SECRET_KEY (--stripe-key) = ********: is a live key, refused with FLOODGATE_PAYMENTS (--payments) = "sandbox": a rehearsal must never hold a live key`},
		{"restricted live key in an external sandbox", func(c *Config) { c.StripeKey, c.StripeAPIBase = "rk_live_abc", "http://sandbox:12111" },
			`STRIPE_SECRET_KEY (--stripe-key) = ********: is a live key, refused with FLOODGATE_PAYMENTS (--payments) = "sandbox": a rehearsal must never hold a live key`},
		{"test key in the sandbox", func(c *Config) { c.StripeKey = "sk_test_abc" }, ""},
		{"publishable key", func(c *Config) { c.Payments, c.StripeKey = "stripe", "pk_live_abc" },
			`STRIPE_SECRET_KEY (--stripe-key) = ********: is not a Stripe secret or restricted key (sk_live_, sk_test_, rk_live_ or rk_test_)`},
		{"sandbox pointed at Stripe", func(c *Config) { c.StripeAPIBase = "https://api.stripe.com" },
			`FLOODGATE_STRIPE_API_BASE (--stripe-api-base) = "https://api.stripe.com": is Stripe itself, not a sandbox, with FLOODGATE_PAYMENTS (--payments) = "sandbox"; use FLOODGATE_PAYMENTS=stripe`},
		{"test key above Stripe's test limit", func(c *Config) { c.Payments, c.StripeKey, c.ProviderGlobalRate = "stripe", "sk_test_abc", 26 },
			"FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = 26: must not exceed 25 with a test key: Stripe's test-mode limit is 25 requests per second"},
		{"test key at Stripe's test limit", func(c *Config) { c.Payments, c.StripeKey, c.ProviderGlobalRate = "stripe", "rk_test_abc", 25 }, ""},
		{"test key, explicit Stripe base", func(c *Config) {
			c.Payments, c.StripeKey, c.StripeAPIBase, c.ProviderGlobalRate = "stripe", "sk_test_abc", "https://api.stripe.com/", 30
		}, "FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = 30: must not exceed 25 with a test key: Stripe's test-mode limit is 25 requests per second"},
		{"test key on stripe-mock", func(c *Config) {
			c.Payments, c.StripeKey, c.StripeAPIBase, c.ProviderGlobalRate = "stripe", "sk_test_abc", "http://localhost:12111", 500
		}, ""},
		{"live key above Stripe's live limit", func(c *Config) { c.Payments, c.StripeKey, c.ProviderGlobalRate = "stripe", "sk_live_abc", 101 },
			"FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = 101: must not exceed 100 with a live key: Stripe's default live-mode limit is 100 requests per second"},
		{"live key at Stripe's live limit", func(c *Config) { c.Payments, c.StripeKey, c.ProviderGlobalRate = "stripe", "sk_live_abc", 100 }, ""},

		// Webhook secrets.
		{"webhook secret empty element", func(c *Config) { c.StripeWebhookSecret = "whsec_a,,whsec_b" },
			"STRIPE_WEBHOOK_SECRET (--stripe-webhook-secret) = ********,,********: secret 2 of the comma-separated list is empty"},
		{"webhook secret trailing comma", func(c *Config) { c.StripeWebhookSecret = "whsec_a, " },
			"STRIPE_WEBHOOK_SECRET (--stripe-webhook-secret) = ********,: secret 2 of the comma-separated list is empty"},
		{"webhook secrets of any form", func(c *Config) { c.StripeWebhookSecret = "whsec_a,sandbox-secret" }, ""},

		// Data directories (more in TestValidateDataDir).
		{"data dir empty", func(c *Config) { c.DataDir = "" },
			`FLOODGATE_DATA_DIR (--data-dir) = "": must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid(t)
			tt.change(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Origin != "" {
				t.Errorf("err = %#v, want an *Error without origin", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is more than one line")
			}
			for _, secret := range []string{"abc", "whsec_", "hunter2", "sandbox-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret (%q)", secret)
				}
			}
		})
	}
}

// TestValidateLoaded checks rules through Load, where the global rate's
// default follows the key.
func TestValidateLoaded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"live key, default rates", map[string]string{"FLOODGATE_PAYMENTS": "stripe", "STRIPE_SECRET_KEY": "sk_live_x"}, ""},
		{"test key, default rates", map[string]string{"FLOODGATE_PAYMENTS": "stripe", "STRIPE_SECRET_KEY": "sk_test_x"}, ""},
		{"provider rate above the test key's default global rate",
			map[string]string{"FLOODGATE_PAYMENTS": "stripe", "STRIPE_SECRET_KEY": "sk_test_x", "FLOODGATE_PROVIDER_RATE": "24"},
			"FLOODGATE_PROVIDER_RATE (--provider-rate) = 24: must not exceed FLOODGATE_PROVIDER_GLOBAL_RATE (--provider-global-rate) = 20, which PaymentIntent requests are part of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.env["FLOODGATE_DATA_DIR"] = dir
			c := load(t, "", tt.env)
			err := c.Validate()
			if (err == nil && tt.want != "") || (err != nil && err.Error() != tt.want) {
				t.Errorf("Validate = %v\nwant %q", err, tt.want)
			}
		})
	}
}

// TestValidateDataDir checks the writable data directory rule against the
// file system, and that Validate leaves nothing behind.
func TestValidateDataDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readonly := filepath.Join(root, "readonly")
	if err := os.Mkdir(readonly, 0o500); err != nil {
		t.Fatal(err)
	}
	canTestPermissions := os.Geteuid() != 0 && runtime.GOOS != "windows"

	tests := []struct {
		name string
		dir  string
		want string // the problem after the value; "" when accepted
		skip bool
	}{
		{name: "existing", dir: root},
		{name: "missing with a writable parent", dir: filepath.Join(root, "new")},
		{name: "missing several levels deep", dir: filepath.Join(root, "a", "b", "c")},
		{name: "a file", dir: file, want: "exists and is not a directory"},
		{name: "under a file", dir: filepath.Join(file, "sub"), want: "cannot be created: " + file + " is not a directory"},
		{name: "read-only", dir: readonly, want: "is not writable: ", skip: !canTestPermissions},
		{name: "under read-only", dir: filepath.Join(readonly, "sub"), want: "cannot be created: " + readonly + " is not writable", skip: !canTestPermissions},
		// /proc refuses new files even to root, so this case runs where
		// the permission cases cannot.
		{name: "under /proc", dir: "/proc/floodgate-data", want: "cannot be created: /proc is not writable", skip: runtime.GOOS != "linux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.skip {
				t.Skip("cannot be tested as this user or on this system")
			}
			c := valid(t)
			c.DataDir = tt.dir
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			} else {
				prefix := `FLOODGATE_DATA_DIR (--data-dir) = "` + tt.dir + `": ` + tt.want
				if err == nil || !strings.HasPrefix(err.Error(), prefix) {
					t.Fatalf("err = %v\nwant %s...", err, prefix)
				}
			}
		})
	}

	// Validate created nothing and left no probe behind.
	t.Cleanup(func() {
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "file" && e.Name() != "readonly" {
				t.Errorf("Validate left %s in %s", e.Name(), root)
			}
		}
	})
}

// TestKeyRetentionFollowsTheSandbox: with the in-process sandbox keeping
// keys for less than a day and no key retention given, floodgate resends a
// key only within five sixths of the sandbox's retention.
func TestKeyRetentionFollowsTheSandbox(t *testing.T) {
	env := map[string]string{"FLOODGATE_SANDBOX_IDEMPOTENCY_RETENTION": "2s", "FLOODGATE_DATA_DIR": t.TempDir()}
	c, _, err := Load(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * time.Second * 5 / 6; c.KeyRetention != want {
		t.Fatalf("KeyRetention = %v, want %v", c.KeyRetention, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	env["FLOODGATE_KEY_RETENTION"] = "1s"
	if c, _, _ = Load(nil, func(k string) string { return env[k] }); c.KeyRetention != time.Second {
		t.Fatalf("an explicit retention was overridden: %v", c.KeyRetention)
	}
	delete(env, "FLOODGATE_SANDBOX_IDEMPOTENCY_RETENTION")
	delete(env, "FLOODGATE_KEY_RETENTION")
	if c, _, _ = Load(nil, func(k string) string { return env[k] }); c.KeyRetention != 20*time.Hour {
		t.Fatalf("default KeyRetention = %v, want 20h", c.KeyRetention)
	}
}
