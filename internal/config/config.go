package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Config is the effective configuration of one floodgate process. Its
// fields are filled from the settings table; build one with Load (the
// process) or Defaults (tests), and check it with Validate before use.
type Config struct {
	// ConfigFile is the file the settings were read from, if any.
	ConfigFile string

	// Addr is the HTTP listen address, host:port.
	Addr string
	// MetricsAddr is where /metrics is served, apart from the public
	// port; empty serves no metrics.
	MetricsAddr string
	// DataDir holds the SQLite database, the admin token hash and any
	// other state of a single node.
	DataDir string
	// StoreURL picks the store engine; see StoreEngine and SQLitePath.
	StoreURL string
	// Payments is "sandbox" or "stripe".
	Payments string
	// AdminToken is the bearer token of the admin API; empty means the
	// server generates one on first start.
	AdminToken string
	// Demo creates the demo campaign and raffle at start.
	Demo bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string

	// ProviderRate is PaymentIntent requests per second, all nodes
	// together.
	ProviderRate float64
	// ProviderGlobalRate is all provider requests per second, all nodes
	// together. When no layer sets it, Load derives it from the key.
	ProviderGlobalRate float64
	// LookupShare is the share of ProviderGlobalRate that the sweeps
	// establishing unknown outcomes may take.
	LookupShare float64
	// ActionTimeout is how long a gift may wait in requires_action before
	// it is canceled.
	ActionTimeout time.Duration
	// StripeKey is the Stripe secret (sk_) or restricted (rk_) key.
	StripeKey string
	// StripeWebhookSecret is a comma-separated list of webhook signing
	// secrets; more than one allows rotation. See WebhookSecrets.
	StripeWebhookSecret string
	// StripeAPIBase, when set, points the Stripe client at another server
	// (stripe-mock, an external floodgate sandbox).
	StripeAPIBase string
	// PublicURL is the URL browsers reach this server at.
	PublicURL string

	// BatchMax is the most donations in one group commit.
	BatchMax int
	// BatchWait is the longest a batch stays open for more donations.
	BatchWait time.Duration
	// IngestQueue is how many requests may wait for a commit; past it
	// the server answers 503 overloaded.
	IngestQueue int
	// ReadConns is the number of store reader connections.
	ReadConns int
	// MaxConns is the most concurrent HTTP connections.
	MaxConns int
	// MaxConnsPerClient is the most concurrent HTTP connections from one
	// client address (an IPv6 /64), trusted proxies and loopback apart;
	// 0 is no cap.
	MaxConnsPerClient int
	// HTTPReadTimeout bounds reading one request.
	HTTPReadTimeout time.Duration
	// HTTPIdleTimeout bounds an idle keep-alive connection.
	HTTPIdleTimeout time.Duration
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout time.Duration
	// DBMaxConns is the PostgreSQL pool size.
	DBMaxConns int

	// DispatchWorkers is the number of provider calls in flight.
	DispatchWorkers int
	// DispatchQueue is the number of claimed donations held in memory.
	DispatchQueue int
	// DispatchClaim is the number of donations claimed per store round
	// trip.
	DispatchClaim int
	// ProviderTimeout bounds one provider call.
	ProviderTimeout time.Duration
	// Lease is how long a claimed donation is held before another
	// dispatcher may resume it.
	Lease time.Duration

	// AddressLimit is the donation attempts per minute from a suspect
	// client address; EmailLimit per hour from one email. 0 turns one off.
	AddressLimit int
	EmailLimit   int
	// AddressDeclineLimit is the card declines in ten minutes that make
	// an address suspect, when they outnumber its successes.
	AddressDeclineLimit int
	// LimitTracked is the keys each limit's table counts exactly.
	LimitTracked int
	// TrustedProxies are the CIDRs whose X-Forwarded-For (or PROXY
	// header) names the client.
	TrustedProxies string
	// ProxyProtocol accepts PROXY protocol headers from trusted proxies.
	ProxyProtocol bool
	// CardBlock is how long a card is refused after a decline;
	// CardTestingArm the blocks within 10 minutes that arm the check.
	CardBlock      time.Duration
	CardTestingArm int

	// SSEMaxSubscribers is the most live-totals subscribers at once.
	SSEMaxSubscribers int
	// SSEHeartbeat is the interval of the comment heartbeat on idle
	// streams.
	SSEHeartbeat time.Duration
	// TotalsInterval coalesces the totals pushed to subscribers.
	TotalsInterval time.Duration

	// SandboxRateLimit is the rate above which the sandbox answers 429.
	SandboxRateLimit float64
	// SandboxLatency is added to every sandbox answer.
	SandboxLatency time.Duration
	// SandboxLatencyJitter is a random extra latency up to this much.
	SandboxLatencyJitter time.Duration
	// SandboxFailRate is the probability of an injected 500.
	SandboxFailRate float64
	// SandboxLoseRate is the probability that the sandbox acts on a
	// request and then loses the answer.
	SandboxLoseRate float64
	// KeyRetention is how long after its first use the provider surely
	// keeps an idempotency key. With the in-process sandbox and no value
	// given, it is derived from SandboxIdempotencyRetention.
	KeyRetention time.Duration
	// SandboxIdempotencyRetention is how long the sandbox keeps an
	// idempotency key.
	SandboxIdempotencyRetention time.Duration

	// origins maps an environment name to where its value came from.
	origins map[string]origin
}

// Source says which layer gave a setting its value.
type Source string

// The layers, from lowest to highest precedence.
const (
	SourceDefault Source = "default"
	SourceFile    Source = "file"
	SourceEnv     Source = "env"
	SourceFlag    Source = "flag"
)

// origin is a Source with the detail a person needs to find the value
// again: the file and line, the variable or the flag.
type origin struct {
	source Source
	detail string
}

func (o origin) String() string {
	if o.detail == "" {
		return string(o.source)
	}
	return string(o.source) + " " + o.detail
}

// Defaults returns a Config holding every default, each recorded as coming
// from the defaults. It is what Load starts from, and what tests change
// field by field.
func Defaults() *Config {
	c := &Config{origins: make(map[string]origin, len(options))}
	for _, o := range options {
		if p := o.parse(c, o.def); p != "" {
			panic("config: default of " + o.env + ": " + p)
		}
		c.origins[o.env] = origin{source: SourceDefault}
	}
	return c
}

// Source reports where the named setting's value came from; name is its
// environment name or its flag (with or without dashes). A field changed
// by hand after Load keeps the source it had; an unknown name reports "".
func (c *Config) Source(name string) Source {
	o := lookup(name)
	if o == nil {
		return ""
	}
	if or, ok := c.origins[o.env]; ok {
		return or.source
	}
	return SourceDefault
}

// origin returns the full origin of a setting, for the dump.
func (c *Config) origin(o *option) origin {
	if or, ok := c.origins[o.env]; ok {
		return or
	}
	return origin{source: SourceDefault}
}

func (c *Config) setOrigin(o *option, or origin) {
	if c.origins == nil {
		c.origins = make(map[string]origin, len(options))
	}
	c.origins[o.env] = or
}

// Stripe key modes, as StripeKeyMode reports them.
const (
	KeyLive = "live"
	KeyTest = "test"
)

// StripeKeyMode reports whether the Stripe key is a live or a test key,
// from its prefix (sk_live_/rk_live_, sk_test_/rk_test_); it is "" when no
// key is set or the prefix is not one of Stripe's.
func (c *Config) StripeKeyMode() string {
	return keyMode(c.StripeKey)
}

func keyMode(key string) string {
	switch {
	case strings.HasPrefix(key, "sk_live_"), strings.HasPrefix(key, "rk_live_"):
		return KeyLive
	case strings.HasPrefix(key, "sk_test_"), strings.HasPrefix(key, "rk_test_"):
		return KeyTest
	}
	return ""
}

// TrustedProxyPrefixes returns TrustedProxies parsed (Validate has
// checked them).
func (c *Config) TrustedProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range strings.Split(c.TrustedProxies, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// SandboxInProcess reports whether floodgate runs the sandbox provider in
// its own process: payments are "sandbox" and no API base points the
// client at a sandbox running elsewhere.
func (c *Config) SandboxInProcess() bool {
	return c.Payments == "sandbox" && c.StripeAPIBase == ""
}

// WebhookSecrets returns the configured webhook signing secrets, split on
// commas and trimmed, in order; an event is genuine when any of them
// verifies it, which is what lets an operator rotate the secret without
// dropping events. It returns nil when none is set. Validate refuses an
// empty element, so after Validate every element is non-empty.
func (c *Config) WebhookSecrets() []string {
	if strings.TrimSpace(c.StripeWebhookSecret) == "" {
		return nil
	}
	parts := strings.Split(c.StripeWebhookSecret, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// Store engines, as StoreEngine reports them.
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
)

// sqliteFile is the database file in the data directory when the store
// URL is plain "sqlite"; it matches sqlite.DefaultPath.
const sqliteFile = "floodgate.db"

// StoreEngine reports which engine the store URL selects, EngineSQLite or
// EnginePostgres, and "" when the URL is not valid (Validate says why).
func (c *Config) StoreEngine() string {
	engine, _, _ := parseStoreURL(c.StoreURL)
	return engine
}

// SQLitePath returns the SQLite database file when the store engine is
// SQLite, and "" otherwise. Plain "sqlite" is floodgate.db in the data
// directory; "sqlite:relative.db" is relative to the data directory, so
// that all of a node's state stays in one place; "sqlite:///abs/path.db"
// is that absolute path.
func (c *Config) SQLitePath() string {
	engine, path, _ := parseStoreURL(c.StoreURL)
	if engine != EngineSQLite {
		return ""
	}
	if path == "" {
		return filepath.Join(c.DataDir, sqliteFile)
	}
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(c.DataDir, path)
}

// stripeHosted reports whether the Stripe client talks to Stripe itself,
// where Stripe's account rate limits apply.
func (c *Config) stripeHosted() bool {
	return isStripeAPI(c.StripeAPIBase)
}

// resolve fills the settings whose defaults depend on other settings. It
// runs after every layer has been applied, so it sees the final key.
func (c *Config) resolve() {
	c.resolveKeyRetention()
	o := lookup("FLOODGATE_PROVIDER_GLOBAL_RATE")
	if c.origin(o).source != SourceDefault {
		return
	}
	switch c.StripeKeyMode() {
	case KeyLive:
		c.ProviderGlobalRate = liveGlobalRate
		c.setOrigin(o, origin{source: SourceDefault, detail: "(live key)"})
	case KeyTest:
		c.ProviderGlobalRate = testGlobalRate
		c.setOrigin(o, origin{source: SourceDefault, detail: "(test key)"})
	default:
		c.ProviderGlobalRate = testGlobalRate
	}
}

// resolveKeyRetention derives the key retention from the in-process
// sandbox's, when that is shorter than Stripe's and no layer set it: five
// sixths of it, the same margin 20h leaves under Stripe's 24h.
func (c *Config) resolveKeyRetention() {
	o := lookup("FLOODGATE_KEY_RETENTION")
	if c.origin(o).source != SourceDefault || !c.SandboxInProcess() || c.SandboxIdempotencyRetention >= 24*time.Hour {
		return
	}
	c.KeyRetention = c.SandboxIdempotencyRetention * 5 / 6
	c.setOrigin(o, origin{source: SourceDefault, detail: "(5/6 of the sandbox's retention)"})
}

// The default global rates leave headroom under Stripe's account limits
// (100/s live, 25/s test) for calls floodgate does not pace, such as the
// dashboard's and other integrations'.
const (
	liveGlobalRate = 80
	testGlobalRate = 20
)

// Warnings lists what is allowed but unwise in this configuration, for
// the log at start: a secret given as a flag's value is visible to every
// local user in /proc/<pid>/cmdline and in the shell's history.
func (c *Config) Warnings() []string {
	var w []string
	for _, o := range options {
		if o.secret && c.origin(o) == (origin{source: SourceFlag, detail: "--" + o.flag}) {
			w = append(w, fmt.Sprintf("%s was given on the command line (--%s), where every local user can read it; use the environment, %s or --%s",
				o.env, o.flag, o.fileEnv(), o.fileFlag()))
		}
	}
	return w
}
