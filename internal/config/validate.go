package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/floodgate/floodgate/internal/writable"
)

// Stripe's documented account rate limits, which floodgate must stay under
// when it talks to Stripe itself.
const (
	stripeTestLimit = 25
	stripeLiveLimit = 100
)

// Validate refuses a configuration that is dangerous or contradicts
// itself, before anything starts. It checks each setting on its own, in
// table order, then the rules that span settings, and returns the first
// problem as an *Error whose message is one line naming the setting. It
// may create and remove a temporary file in the data directory to prove
// it writable, and never creates the directory itself.
func (c *Config) Validate() error {
	for _, o := range options {
		if o.check == nil {
			continue
		}
		if p := o.check(o.get(c)); p != "" {
			return c.fail(o.env, "%s", p)
		}
	}
	for _, rule := range rules {
		if err := rule(c); err != nil {
			return err
		}
	}
	return nil
}

// rules are the checks that span settings. Each names the setting to
// change first and the others it conflicts with.
var rules = []func(c *Config) error{
	// A batch is taken from the queue in front of it; one larger than the
	// queue could never fill, and a batcher waiting for it would wait for
	// ever.
	func(c *Config) error {
		if c.BatchMax > c.IngestQueue {
			return c.fail("FLOODGATE_BATCH_MAX", "must not exceed %s, the queue a batch is taken from", c.ref("FLOODGATE_INGEST_QUEUE"))
		}
		return nil
	},
	func(c *Config) error {
		if c.DispatchClaim > c.DispatchQueue {
			return c.fail("FLOODGATE_DISPATCH_CLAIM", "must not exceed %s, the queue a claim is held in", c.ref("FLOODGATE_DISPATCH_QUEUE"))
		}
		return nil
	},
	func(c *Config) error {
		if _, port, _ := net.SplitHostPort(c.Addr); c.MetricsAddr == c.Addr && port != "0" {
			return c.fail("FLOODGATE_METRICS_ADDR", "must differ from %s: metrics are kept off the public port", c.ref("FLOODGATE_ADDR"))
		}
		return nil
	},
	// Every subscriber holds a connection; if subscribers could take all
	// of them, no donation could get through.
	func(c *Config) error {
		if c.SSEMaxSubscribers >= c.MaxConns {
			return c.fail("FLOODGATE_SSE_MAX_SUBSCRIBERS", "must be less than %s, or subscribers could take every connection and leave none for donations", c.ref("FLOODGATE_MAX_CONNS"))
		}
		return nil
	},
	// A client allowed every connection could lock every other one out,
	// which is what the cap is there to prevent.
	func(c *Config) error {
		if c.MaxConnsPerClient >= c.MaxConns {
			return c.fail("FLOODGATE_MAX_CONNS_PER_CLIENT", "must be less than %s, or one client could hold every connection (0 turns the cap off)", c.ref("FLOODGATE_MAX_CONNS"))
		}
		return nil
	},
	// A lease that can run out during a provider call lets a second
	// dispatcher resume a gift that is still being charged.
	func(c *Config) error {
		if c.Lease <= c.ProviderTimeout {
			return c.fail("FLOODGATE_LEASE", "must be longer than %s, or another dispatcher could resume a gift in the middle of a call", c.ref("FLOODGATE_PROVIDER_TIMEOUT"))
		}
		return nil
	},
	// Resending a key the provider may have forgotten can charge twice.
	func(c *Config) error {
		if c.SandboxInProcess() && c.KeyRetention >= c.SandboxIdempotencyRetention {
			return c.fail("FLOODGATE_KEY_RETENTION", "must be shorter than %s, or a resent key could charge twice", c.ref("FLOODGATE_SANDBOX_IDEMPOTENCY_RETENTION"))
		}
		if c.Payments == "stripe" && c.KeyRetention > 24*time.Hour {
			return c.fail("FLOODGATE_KEY_RETENTION", "must not exceed 24h, the least Stripe keeps an idempotency key")
		}
		return nil
	},
	// Every node would run its own provider: a gift resumed by another node
	// would be charged in another sandbox, a double charge no ledger shows.
	func(c *Config) error {
		if c.SandboxInProcess() && c.StoreEngine() == EnginePostgres {
			return c.fail("FLOODGATE_STORE_URL", "is PostgreSQL (several nodes) with the in-process sandbox: run `floodgate sandbox` once and point every node at it with %s", c.ref("FLOODGATE_STRIPE_API_BASE"))
		}
		return nil
	},
	// PaymentIntent requests are part of all requests.
	func(c *Config) error {
		if c.ProviderRate > c.ProviderGlobalRate {
			return c.fail("FLOODGATE_PROVIDER_RATE", "must not exceed %s, which PaymentIntent requests are part of", c.ref("FLOODGATE_PROVIDER_GLOBAL_RATE"))
		}
		return nil
	},
	// The in-process sandbox enforces its own limit the way Stripe does;
	// sending above it would only produce 429s.
	func(c *Config) error {
		if !c.SandboxInProcess() {
			return nil
		}
		for _, name := range []string{"FLOODGATE_PROVIDER_RATE", "FLOODGATE_PROVIDER_GLOBAL_RATE"} {
			if lookup(name).get(c).(float64) > c.SandboxRateLimit {
				return c.fail(name, "must not exceed %s, or the in-process sandbox answers 429", c.ref("FLOODGATE_SANDBOX_RATE_LIMIT"))
			}
		}
		return nil
	},
	// A PROXY header names the client to whoever sends it: believed from
	// nobody, the setting would only refuse every connection's header.
	func(c *Config) error {
		if c.ProxyProtocol && strings.TrimSpace(c.TrustedProxies) == "" {
			return c.fail("FLOODGATE_PROXY_PROTOCOL", "needs %s: a PROXY header is believed only from a trusted proxy", c.ref("FLOODGATE_TRUSTED_PROXIES"))
		}
		return nil
	},
	func(c *Config) error {
		if c.Payments == "stripe" && c.StripeKey == "" {
			return c.fail("STRIPE_SECRET_KEY", "is required with %s", c.ref("FLOODGATE_PAYMENTS"))
		}
		return nil
	},
	// A rehearsal must never be able to charge a real card.
	func(c *Config) error {
		if c.Payments == "sandbox" && c.StripeKeyMode() == KeyLive {
			return c.fail("STRIPE_SECRET_KEY", "is a live key, refused with %s: a rehearsal must never hold a live key", c.ref("FLOODGATE_PAYMENTS"))
		}
		return nil
	},
	func(c *Config) error {
		if c.Payments == "sandbox" && c.StripeAPIBase != "" && c.stripeHosted() {
			return c.fail("FLOODGATE_STRIPE_API_BASE", "is Stripe itself, not a sandbox, with %s; use FLOODGATE_PAYMENTS=stripe", c.ref("FLOODGATE_PAYMENTS"))
		}
		return nil
	},
	// Stripe limits the whole account; above the limit every extra request
	// is a 429 that slows the dispatcher down instead of speeding it up.
	func(c *Config) error {
		if c.Payments != "stripe" || !c.stripeHosted() {
			return nil
		}
		switch c.StripeKeyMode() {
		case KeyTest:
			if c.ProviderGlobalRate > stripeTestLimit {
				return c.fail("FLOODGATE_PROVIDER_GLOBAL_RATE", "must not exceed %d with a test key: Stripe's test-mode limit is %d requests per second", stripeTestLimit, stripeTestLimit)
			}
		case KeyLive:
			if c.ProviderGlobalRate > stripeLiveLimit {
				return c.fail("FLOODGATE_PROVIDER_GLOBAL_RATE", "must not exceed %d with a live key: Stripe's default live-mode limit is %d requests per second", stripeLiveLimit, stripeLiveLimit)
			}
		}
		return nil
	},
}

// fail returns the *Error for the named setting with its current value.
func (c *Config) fail(name, format string, args ...any) *Error {
	o := lookup(name)
	return &Error{Name: o.env, Flag: o.flag, Value: o.display(o.value(c)), Problem: fmt.Sprintf(format, args...)}
}

// Refuse returns the *Error for the named setting with its current value,
// for checks made outside this package (a store path the engine cannot
// open).
func (c *Config) Refuse(name, format string, args ...any) *Error {
	return c.fail(name, format, args...)
}

// ref names another setting with its value, as a rule's message cites it.
func (c *Config) ref(name string) string {
	o := lookup(name)
	return fmt.Sprintf("%s (--%s) = %s", o.env, o.flag, o.display(o.value(c)))
}

// positive refuses a zero or negative bound: a queue of zero is a server
// that refuses everything, a timeout of zero one that waits for ever or
// not at all, depending on who reads it.
func positive(v any) string {
	switch v := v.(type) {
	case int:
		if v < 1 {
			return "must be at least 1"
		}
	case float64:
		if !(v > 0) || math.IsInf(v, 0) {
			return "must be greater than 0"
		}
	case time.Duration:
		if v <= 0 {
			return "must be longer than 0s"
		}
	}
	return ""
}

// share refuses a share outside (0, 1].
func share(v any) string {
	if f, ok := v.(float64); ok && (!(f > 0) || f > 1) {
		return "must be greater than 0 and at most 1"
	}
	return ""
}

// nonNegative refuses a negative duration, where zero means "none".
func nonNegative(v any) string {
	if d, ok := v.(time.Duration); ok && d < 0 {
		return "must not be negative"
	}
	return ""
}

// probability refuses a rate outside [0,1): a rate of 1 would fail every
// request, which is an outage, not a rehearsal.
func nonNegativeInt(v any) string {
	if n, ok := v.(int); ok && n < 0 {
		return "must not be negative (0 turns the limit off)"
	}
	return ""
}

// checkCIDRs accepts an empty list or comma-separated CIDRs.
func checkCIDRs(v any) string {
	s, _ := v.(string)
	if strings.TrimSpace(s) == "" {
		return ""
	}
	for _, c := range strings.Split(s, ",") {
		if _, err := netip.ParsePrefix(strings.TrimSpace(c)); err != nil {
			return fmt.Sprintf("%q is not a CIDR like 10.0.0.0/8", strings.TrimSpace(c))
		}
	}
	return ""
}

func probability(v any) string {
	if f, ok := v.(float64); ok && !(f >= 0 && f < 1) {
		return "must be at least 0 and less than 1"
	}
	return ""
}

// oneOf refuses a value that is not one of values.
func oneOf(values ...string) func(any) string {
	return func(v any) string {
		s, _ := v.(string)
		for _, ok := range values {
			if s == ok {
				return ""
			}
		}
		return "must be " + orList(values)
	}
}

func orList(values []string) string {
	if len(values) == 1 {
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

// checkOptionalAddr allows an empty address (the listener is off).
func checkOptionalAddr(v any) string {
	if v.(string) == "" {
		return ""
	}
	return checkAddr(v)
}

func checkAddr(v any) string {
	if _, _, err := net.SplitHostPort(v.(string)); err != nil {
		return "not host:port (" + err.Error() + ")"
	}
	return ""
}

// checkPublicURL allows an empty URL (the server then has no public
// address to announce) and otherwise wants an absolute http(s) URL,
// because browsers and webhooks are sent to it.
func checkPublicURL(v any) string {
	if v.(string) == "" {
		return ""
	}
	return httpURLProblem(v.(string))
}

// checkAPIBase allows an empty base (Stripe's own) and otherwise wants an
// absolute http(s) URL.
func checkAPIBase(v any) string {
	if v.(string) == "" {
		return ""
	}
	return httpURLProblem(v.(string))
}

func httpURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "must be an absolute http:// or https:// URL"
	}
	return ""
}

// isStripeAPI reports whether an API base is Stripe's own: empty (the
// client's default) or api.stripe.com.
func isStripeAPI(base string) bool {
	if base == "" {
		return true
	}
	u, err := url.Parse(base)
	return err == nil && strings.EqualFold(u.Hostname(), "api.stripe.com")
}

// checkStripeKey refuses a key that is not a Stripe secret or restricted
// key; a publishable key (pk_) pasted by mistake would fail every charge.
func checkStripeKey(v any) string {
	if k := v.(string); k != "" && keyMode(k) == "" {
		return "is not a Stripe secret or restricted key (sk_live_, sk_test_, rk_live_ or rk_test_)"
	}
	return ""
}

// checkWebhookSecrets allows any non-empty secrets (a sandbox or a test
// tool may use its own format) but refuses an empty one, which a stray
// comma makes and which would verify nothing.
func checkWebhookSecrets(v any) string {
	s := v.(string)
	if strings.TrimSpace(s) == "" {
		return ""
	}
	for i, p := range strings.Split(s, ",") {
		if strings.TrimSpace(p) == "" {
			return fmt.Sprintf("secret %d of the comma-separated list is empty", i+1)
		}
	}
	return ""
}

// checkStoreURL refuses a store URL no engine understands.
func checkStoreURL(v any) string {
	_, _, p := parseStoreURL(v.(string))
	return p
}

// validStores lists the store URL forms, for the error.
const validStores = "sqlite, sqlite:relative.db, sqlite:///abs/path.db, postgres://... or postgresql://..."

// parseStoreURL splits a store URL into its engine and, for SQLite, the
// path it names ("" for the default file in the data directory). The
// problem is "" when the URL is valid.
func parseStoreURL(s string) (engine, path, problem string) {
	lower := strings.ToLower(s)
	switch {
	case s == "sqlite":
		return EngineSQLite, "", ""
	case strings.HasPrefix(lower, "sqlite:"):
		rest := s[len("sqlite:"):]
		if r, ok := strings.CutPrefix(rest, "//"); ok {
			if !strings.HasPrefix(r, "/") {
				return "", "", "a sqlite URL names no host: write sqlite:///abs/path.db or sqlite:relative.db"
			}
			rest = r
		}
		switch {
		case rest == "" || strings.HasSuffix(rest, "/"):
			return "", "", "names no database file"
		case strings.ContainsAny(rest, "?#"):
			return "", "", "a sqlite URL takes no query or fragment"
		}
		return EngineSQLite, rest, ""
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		if _, err := url.Parse(s); err != nil {
			return "", "", "not a valid URL"
		}
		return EnginePostgres, "", ""
	}
	return "", "", "unknown store; valid are " + validStores
}

// redactURL hides the credentials of a URL: the password in its user
// information (or, on an HTTP URL, the whole user information, which is
// how an API key rides in one) and any query parameter that carries a
// credential; a value that is not a URL but mentions a password or holds
// an @ is hidden whole.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(strings.ToLower(s), "password") || strings.Contains(s, "@") {
			return mask
		}
		return s
	}
	changed := false
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok && credentialParam(k) {
				parts[i], changed = k+"="+mask, true
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if u.User != nil {
		prefix := u.Scheme + "://"
		if _, has := u.User.Password(); has {
			// A database user name says which account, not how to get
			// in: it stays, the password goes.
			user := url.User(u.User.Username()).String()
			u.User = nil
			return prefix + user + ":" + mask + "@" + strings.TrimPrefix(u.String(), prefix)
		}
		if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			// On an HTTP URL a lone user name is how a key is sent
			// (https://sk_live_...@host): all of it is the secret.
			u.User = nil
			return prefix + mask + "@" + strings.TrimPrefix(u.String(), prefix)
		}
	}
	if !changed {
		return s
	}
	return u.String()
}

// credentialParam reports whether a URL query parameter carries a
// credential.
func credentialParam(name string) bool {
	switch strings.ToLower(name) {
	case "password", "passwd", "pass", "pwd", "sslpassword", "secret", "token", "key", "api_key", "apikey", "access_token", "auth":
		return true
	}
	return false
}

// minAdminToken is the shortest admin token accepted: a configured token
// guards pausing charging and every campaign, and one an operator typed
// (or that a guesser could try) must not be short.
const minAdminToken = 32

func checkAdminToken(v any) string {
	if t := v.(string); t != "" && utf8.RuneCountInString(t) < minAdminToken {
		return fmt.Sprintf("must be at least %d characters (it is %d); leave it empty and floodgate generates one", minAdminToken, utf8.RuneCountInString(t))
	}
	return ""
}

func checkDataDir(v any) string {
	dir := v.(string)
	if dir == "" {
		return "must not be empty"
	}
	if err := writable.Creatable(dir); err != nil {
		return err.Error()
	}
	return ""
}
