package config

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// option is one row of the settings table.
type option struct {
	// env is the environment name, also the name in a config file and the
	// key of Config.origins.
	env string
	// flag is the flag of `floodgate serve`, without dashes.
	flag string
	// def is the default as text, parsed by the same code as every other
	// source, so the help shows exactly what the server uses.
	def string
	// help is one line for the flag's help.
	help string
	// secret settings are masked wherever they are shown and may also be
	// read from the file named by env+"_FILE" or --flag-file.
	secret bool
	// field returns a pointer to the Config field the setting fills:
	// *string, *int, *float64, *bool or *time.Duration.
	field func(*Config) any
	// check is the setting's own rule, run by Validate; it returns the
	// problem, or "" when the value is acceptable.
	check func(v any) string
	// redact, when set, hides the secret parts of a value wherever it is
	// shown (a password in a store URL, each webhook secret).
	redact func(string) string
}

// options is the table of every setting, in the order of the help and the
// dump: where the server listens and keeps its state, then payments, then
// the bounds of each stage from ingest to the live totals, then the
// sandbox.
var options = []*option{
	{env: "FLOODGATE_CONFIG", flag: "config", def: "",
		help:  "A file of NAME=value lines, read before the environment.",
		field: func(c *Config) any { return &c.ConfigFile }},
	{env: "FLOODGATE_ADDR", flag: "addr", def: ":8080",
		help:  "The address the HTTP server listens on, host:port.",
		field: func(c *Config) any { return &c.Addr }, check: checkAddr},
	{env: "FLOODGATE_METRICS_ADDR", flag: "metrics-addr", def: "127.0.0.1:9464",
		help:  "The address /metrics (Prometheus) is served on, host:port, apart from the public port; empty serves none.",
		field: func(c *Config) any { return &c.MetricsAddr }, check: checkOptionalAddr},
	{env: "FLOODGATE_DATA_DIR", flag: "data-dir", def: "./floodgate-data",
		help:  "The directory for this node's state: the SQLite store and the admin token hash.",
		field: func(c *Config) any { return &c.DataDir }, check: checkDataDir},
	{env: "FLOODGATE_STORE_URL", flag: "store", def: "sqlite",
		help:  "The store: sqlite (a file in the data dir), sqlite:relative.db, sqlite:///abs/path.db, or postgres://...",
		field: func(c *Config) any { return &c.StoreURL }, check: checkStoreURL, redact: redactURL},
	{env: "FLOODGATE_PAYMENTS", flag: "payments", def: "sandbox",
		help:  "The payment provider: sandbox (built in, Stripe-compatible) or stripe.",
		field: func(c *Config) any { return &c.Payments }, check: oneOf("sandbox", "stripe")},
	{env: "FLOODGATE_ADMIN_TOKEN", flag: "admin-token", def: "", secret: true,
		help:  "The admin API's bearer token, at least 32 characters; when empty, one is generated on first start and printed once.",
		field: func(c *Config) any { return &c.AdminToken }, check: checkAdminToken},
	{env: "FLOODGATE_DEMO", flag: "demo", def: "false",
		help:  "Create the demo campaign at start if it does not exist.",
		field: func(c *Config) any { return &c.Demo }},
	{env: "FLOODGATE_LOG_LEVEL", flag: "log-level", def: "info",
		help:  "The least severe log level written: debug, info, warn or error.",
		field: func(c *Config) any { return &c.LogLevel }, check: oneOf("debug", "info", "warn", "error")},
	{env: "FLOODGATE_LOG_FORMAT", flag: "log-format", def: "text",
		help:  "The log format: text or json.",
		field: func(c *Config) any { return &c.LogFormat }, check: oneOf("text", "json")},
	{env: "FLOODGATE_PUBLIC_URL", flag: "public-url", def: "",
		help:  "The URL browsers reach this server at, for the sandbox's 3-D Secure page and webhooks.",
		field: func(c *Config) any { return &c.PublicURL }, check: checkPublicURL, redact: redactURL},

	{env: "FLOODGATE_PROVIDER_RATE", flag: "provider-rate", def: "20",
		help:  "PaymentIntent requests per second, all nodes together (Stripe's default per-endpoint limit is 25/s).",
		field: func(c *Config) any { return &c.ProviderRate }, check: positive},
	{env: "FLOODGATE_PROVIDER_GLOBAL_RATE", flag: "provider-global-rate", def: "20",
		help:  "All provider requests per second, all nodes together; 80 with a live key, 20 otherwise (Stripe: 100 / 25).",
		field: func(c *Config) any { return &c.ProviderGlobalRate }, check: positive},
	{env: "FLOODGATE_LOOKUP_SHARE", flag: "lookup-share", def: "0.2",
		help:  "The share of the global rate that looking up unknown payment outcomes may take (0 < share <= 1), so lookups never starve charging.",
		field: func(c *Config) any { return &c.LookupShare }, check: share},
	{env: "FLOODGATE_ACTION_TIMEOUT", flag: "action-timeout", def: "15m",
		help:  "A gift left in requires_action longer is canceled.",
		field: func(c *Config) any { return &c.ActionTimeout }, check: positive},
	{env: "STRIPE_SECRET_KEY", flag: "stripe-key", def: "", secret: true,
		help:  "The Stripe secret or restricted key; required with --payments stripe.",
		field: func(c *Config) any { return &c.StripeKey }, check: checkStripeKey},
	{env: "STRIPE_WEBHOOK_SECRET", flag: "stripe-webhook-secret", def: "", secret: true,
		help:  "The webhook signing secret; a comma-separated second one allows rotation.",
		field: func(c *Config) any { return &c.StripeWebhookSecret }, check: checkWebhookSecrets, redact: maskList},
	{env: "FLOODGATE_STRIPE_API_BASE", flag: "stripe-api-base", def: "",
		help:  "The Stripe API base URL; empty is Stripe's own (point it at stripe-mock or an external sandbox).",
		field: func(c *Config) any { return &c.StripeAPIBase }, check: checkAPIBase, redact: redactURL},

	{env: "FLOODGATE_BATCH_MAX", flag: "batch-max", def: "512",
		help:  "The most donations in one group commit.",
		field: func(c *Config) any { return &c.BatchMax }, check: positive},
	{env: "FLOODGATE_BATCH_WAIT", flag: "batch-wait", def: "1ms",
		help:  "The longest a batch stays open for more donations.",
		field: func(c *Config) any { return &c.BatchWait }, check: positive},
	{env: "FLOODGATE_INGEST_QUEUE", flag: "ingest-queue", def: "16384",
		help:  "Requests waiting for a commit; past it the server answers 503 overloaded.",
		field: func(c *Config) any { return &c.IngestQueue }, check: positive},
	{env: "FLOODGATE_READ_CONNS", flag: "read-conns", def: "4",
		help:  "Store reader connections.",
		field: func(c *Config) any { return &c.ReadConns }, check: positive},
	{env: "FLOODGATE_DB_MAX_CONNS", flag: "db-max-conns", def: "16",
		help:  "The PostgreSQL connection pool size.",
		field: func(c *Config) any { return &c.DBMaxConns }, check: positive},
	{env: "FLOODGATE_MAX_CONNS", flag: "max-conns", def: "20000",
		help:  "The most concurrent HTTP connections.",
		field: func(c *Config) any { return &c.MaxConns }, check: positive},
	{env: "FLOODGATE_MAX_CONNS_PER_CLIENT", flag: "max-conns-per-client", def: "256",
		help:  "The most concurrent HTTP connections from one client address (an IPv6 /64); 0: no cap. Trusted proxies (every donor comes through them) and loopback are not capped. Many donors can share an address (mobile carriers' NAT), and idle connections give way first: keep it generous.",
		field: func(c *Config) any { return &c.MaxConnsPerClient }, check: nonNegativeInt},
	{env: "FLOODGATE_HTTP_READ_TIMEOUT", flag: "http-read-timeout", def: "10s",
		help:  "The longest the server waits for one request to arrive.",
		field: func(c *Config) any { return &c.HTTPReadTimeout }, check: positive},
	{env: "FLOODGATE_HTTP_IDLE_TIMEOUT", flag: "http-idle-timeout", def: "120s",
		help:  "The longest an idle keep-alive connection is kept open.",
		field: func(c *Config) any { return &c.HTTPIdleTimeout }, check: positive},
	{env: "FLOODGATE_SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", def: "15s",
		help:  "The longest a shutdown waits for requests and provider calls to drain.",
		field: func(c *Config) any { return &c.ShutdownTimeout }, check: positive},

	{env: "FLOODGATE_DISPATCH_WORKERS", flag: "dispatch-workers", def: "32",
		help:  "Provider calls in flight.",
		field: func(c *Config) any { return &c.DispatchWorkers }, check: positive},
	{env: "FLOODGATE_DISPATCH_QUEUE", flag: "dispatch-queue", def: "256",
		help:  "Claimed donations held in memory.",
		field: func(c *Config) any { return &c.DispatchQueue }, check: positive},
	{env: "FLOODGATE_DISPATCH_CLAIM", flag: "dispatch-claim", def: "64",
		help:  "Donations claimed per store round trip.",
		field: func(c *Config) any { return &c.DispatchClaim }, check: positive},
	{env: "FLOODGATE_PROVIDER_TIMEOUT", flag: "provider-timeout", def: "30s",
		help:  "The longest one provider call may take.",
		field: func(c *Config) any { return &c.ProviderTimeout }, check: positive},
	{env: "FLOODGATE_KEY_RETENTION", flag: "key-retention", def: "20h",
		help:  "How long after its first use the provider surely keeps an idempotency key; a time-out is resent with the same key only within it (Stripe keeps keys at least 24h).",
		field: func(c *Config) any { return &c.KeyRetention }, check: positive},
	{env: "FLOODGATE_LEASE", flag: "lease", def: "2m",
		help:  "How long a claimed donation is held before another dispatcher may resume it.",
		field: func(c *Config) any { return &c.Lease }, check: positive},

	{env: "FLOODGATE_ADDRESS_LIMIT", flag: "address-limit", def: "20",
		help:  "Donation attempts per minute from a suspect client address (see --address-decline-limit) before 429 rate_limited; queued gifts from it past this are failed without being sent. Other addresses are not limited: thousands of donors can share one (venue Wi-Fi, mobile carriers' NAT). 0: no limit.",
		field: func(c *Config) any { return &c.AddressLimit }, check: nonNegativeInt},
	{env: "FLOODGATE_ADDRESS_DECLINE_LIMIT", flag: "address-decline-limit", def: "10",
		help:  "Card declines in 10 minutes that make a client address suspect, when they also outnumber its successful gifts.",
		field: func(c *Config) any { return &c.AddressDeclineLimit }, check: positive},
	{env: "FLOODGATE_EMAIL_LIMIT", flag: "email-limit", def: "10",
		help:  "Donation attempts (new gifts and new cards) one email address may make per hour before 429 rate_limited; 0: no limit.",
		field: func(c *Config) any { return &c.EmailLimit }, check: nonNegativeInt},
	{env: "FLOODGATE_LIMIT_TRACKED", flag: "limit-tracked", def: "1000000",
		help:  "The keys each of the limits' tables (attempts per email; declines, successes and attempts per address) counts exactly per window: about 20 bytes a key (measured at a million; up to twice that just after a map grows), and a table keeps two windows: ~40 MB a table at 1,000,000. Past it, keys are counted in sketches (at most 8 MiB a table) that can over-count, never under-count.",
		field: func(c *Config) any { return &c.LimitTracked }, check: positive},
	{env: "FLOODGATE_TRUSTED_PROXIES", flag: "trusted-proxies", def: "",
		help:  "Comma-separated CIDRs of proxies whose X-Forwarded-For (or PROXY header) names the client; from any other peer the header is ignored and the peer is the client. Behind a load balancer, set it, or the whole audience is one address.",
		field: func(c *Config) any { return &c.TrustedProxies }, check: checkCIDRs},
	{env: "FLOODGATE_PROXY_PROTOCOL", flag: "proxy-protocol", def: "false",
		help:  "Accept the PROXY protocol (v1 and v2) from trusted proxies, for TCP load balancers: the header's source is the client. A PROXY header from any other peer is refused.",
		field: func(c *Config) any { return &c.ProxyProtocol }},
	{env: "FLOODGATE_CARD_BLOCK", flag: "card-block", def: "24h",
		help:  "How long a card (by its fingerprint) is refused after a decline a donor could not fix by retyping; 0s: never.",
		field: func(c *Config) any { return &c.CardBlock }, check: nonNegative},
	{env: "FLOODGATE_CARD_TESTING_ARM", flag: "card-testing-arm", def: "5",
		help:  "Cards blocked within 10 minutes that arm the fingerprint check: while armed, every gift's card is looked up (one provider request) before it is charged.",
		field: func(c *Config) any { return &c.CardTestingArm }, check: positive},

	{env: "FLOODGATE_SSE_MAX_SUBSCRIBERS", flag: "sse-max-subscribers", def: "15000",
		help:  "The most live-totals subscribers at once.",
		field: func(c *Config) any { return &c.SSEMaxSubscribers }, check: positive},
	{env: "FLOODGATE_SSE_HEARTBEAT", flag: "sse-heartbeat", def: "15s",
		help:  "The interval of the heartbeat comment on a quiet event stream.",
		field: func(c *Config) any { return &c.SSEHeartbeat }, check: positive},
	{env: "FLOODGATE_TOTALS_INTERVAL", flag: "totals-interval", def: "250ms",
		help:  "Totals pushed to subscribers are coalesced over this interval.",
		field: func(c *Config) any { return &c.TotalsInterval }, check: positive},

	{env: "FLOODGATE_SANDBOX_RATE_LIMIT", flag: "sandbox-rate-limit", def: "25",
		help:  "The sandbox answers 429 above this many requests per second, as Stripe does.",
		field: func(c *Config) any { return &c.SandboxRateLimit }, check: positive},
	{env: "FLOODGATE_SANDBOX_LATENCY", flag: "sandbox-latency", def: "0s",
		help:  "Latency the sandbox adds to every answer.",
		field: func(c *Config) any { return &c.SandboxLatency }, check: nonNegative},
	{env: "FLOODGATE_SANDBOX_LATENCY_JITTER", flag: "sandbox-latency-jitter", def: "0s",
		help:  "A random extra sandbox latency up to this much.",
		field: func(c *Config) any { return &c.SandboxLatencyJitter }, check: nonNegative},
	{env: "FLOODGATE_SANDBOX_FAIL_RATE", flag: "sandbox-fail-rate", def: "0",
		help:  "The probability, in [0,1), that the sandbox answers 500.",
		field: func(c *Config) any { return &c.SandboxFailRate }, check: probability},
	{env: "FLOODGATE_SANDBOX_LOSE_RATE", flag: "sandbox-lose-rate", def: "0",
		help:  "The probability, in [0,1), that the sandbox acts on a request and loses the answer.",
		field: func(c *Config) any { return &c.SandboxLoseRate }, check: probability},
	{env: "FLOODGATE_SANDBOX_IDEMPOTENCY_RETENTION", flag: "sandbox-idempotency-retention", def: "24h",
		help:  "How long the sandbox keeps an idempotency key, as Stripe keeps one at least 24h.",
		field: func(c *Config) any { return &c.SandboxIdempotencyRetention }, check: positive},
}

// configOption is the row of FLOODGATE_CONFIG, which a config file cannot
// set: the file is already chosen by the time it is read.
var configOption = options[0]

// optionsByName finds a row by environment name or flag.
var optionsByName = func() map[string]*option {
	m := make(map[string]*option, 2*len(options))
	for _, o := range options {
		m[o.env] = o
		m[o.flag] = o
	}
	return m
}()

// lookup finds a row by environment name or flag, with or without dashes.
func lookup(name string) *option {
	return optionsByName[strings.TrimLeft(name, "-")]
}

// fileEnv is the variable naming a file that holds a secret.
func (o *option) fileEnv() string { return o.env + "_FILE" }

// fileFlag is the flag naming a file that holds a secret.
func (o *option) fileFlag() string { return o.flag + "-file" }

// kind names the Go type of the setting, for the help.
func (o *option) kind() string {
	switch o.field(&Config{}).(type) {
	case *int:
		return "int"
	case *float64:
		return "float"
	case *bool:
		return "bool"
	case *time.Duration:
		return "duration"
	}
	return "string"
}

// isString reports whether the setting holds text, which errors quote.
func (o *option) isString() bool { return o.kind() == "string" }

// parse sets the setting in c from its text form and returns the problem,
// or "" when the text parsed. Text is taken as it is for strings; numbers,
// booleans and durations may carry surrounding spaces.
func (o *option) parse(c *Config, s string) string {
	switch p := o.field(c).(type) {
	case *string:
		*p = s
	case *int:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 0)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return "out of range"
			}
			return "not a whole number"
		}
		*p = int(n)
	case *float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return "not a finite number"
		}
		*p = f
	case *bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return "not a boolean (true or false)"
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return "not a duration (give a unit, e.g. 250ms, 15s, 2m, 24h)"
		}
		*p = d
	default:
		panic(fmt.Sprintf("config: %s has an unsupported field type %T", o.env, p))
	}
	return ""
}

// value returns the setting's value in c as text that parse accepts.
func (o *option) value(c *Config) string {
	switch p := o.field(c).(type) {
	case *string:
		return *p
	case *int:
		return strconv.Itoa(*p)
	case *float64:
		return formatFloat(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return formatDuration(*p)
	}
	panic("config: " + o.env + " has an unsupported field type")
}

// formatDuration writes a duration as time.Duration.String does, without
// the zero units it appends ("2m", not "2m0s"), as a person would write it.
func formatDuration(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// get returns the setting's value in c, for its check.
func (o *option) get(c *Config) any {
	switch p := o.field(c).(type) {
	case *string:
		return *p
	case *int:
		return *p
	case *float64:
		return *p
	case *bool:
		return *p
	case *time.Duration:
		return *p
	}
	panic("config: " + o.env + " has an unsupported field type")
}

// shown returns text of this setting as it may be shown to a person:
// a secret as ******** (or "" when empty), other values with their secret
// parts redacted.
func (o *option) shown(s string) string {
	if o.redact != nil {
		return o.redact(s)
	}
	if o.secret {
		return maskSecret(s)
	}
	return s
}

// display returns text of this setting as it appears in an error: shown,
// and quoted when it is text, so that an empty value or one with spaces
// is still visible.
func (o *option) display(s string) string {
	v := o.shown(s)
	if o.secret && s != "" {
		return v
	}
	if o.isString() {
		return strconv.Quote(v)
	}
	return v
}

// displayRaw returns text given for this setting as it appears in an
// error about that text: always quoted, as it is whatever was typed, and
// masked when it is secret.
func (o *option) displayRaw(s string) string {
	if o.secret && s != "" {
		return o.shown(s)
	}
	return strconv.Quote(o.shown(s))
}

// mask is what a set secret is shown as.
const mask = "********"

func maskSecret(s string) string {
	if s == "" {
		return ""
	}
	return mask
}

// maskList masks each element of a comma-separated list of secrets, so
// the dump shows how many are configured, and where one is empty, without
// showing any of them.
func maskList(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = maskSecret(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Setting describes one setting, for help texts and documentation.
type Setting struct {
	// Name is the environment name, also used in a config file.
	Name string
	// Flag is the flag of `floodgate serve`, without dashes.
	Flag string
	// Default is the default value as text; for the global provider rate
	// it is the value without a live key.
	Default string
	// Help is one line saying what the setting does.
	Help string
	// Secret settings are masked in the dump and may be read from the
	// file named by Name+"_FILE" or --Flag-file.
	Secret bool
}

// Settings returns every setting, in the order of the help and the dump.
func Settings() []Setting {
	s := make([]Setting, len(options))
	for i, o := range options {
		s[i] = Setting{Name: o.env, Flag: o.flag, Default: o.def, Help: o.help, Secret: o.secret}
	}
	return s
}

// Usage writes the help for every flag Load understands, naming the
// environment variable and the default of each, so that one text documents
// all three ways of setting a value.
func Usage(w io.Writer) {
	for _, o := range options {
		name := "--" + o.flag
		if k := o.kind(); k != "bool" {
			name += " " + k
		}
		where := o.env
		switch {
		case o.secret:
			where += fmt.Sprintf(", or a file named by %s or --%s", o.fileEnv(), o.fileFlag())
		case o.def != "":
			where += fmt.Sprintf("; default %q", o.def)
		}
		fmt.Fprintf(w, "  %s\n        %s\n        %s\n", name, o.help, where)
	}
}
