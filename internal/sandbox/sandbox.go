package sandbox

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v85"
	"golang.org/x/time/rate"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/startstop"
)

// maxBody bounds one request body; Stripe's largest create is far smaller.
const maxBody = 1 << 20

// Server is one sandbox: an in-memory Stripe account behind an
// http.Handler. It is safe for concurrent use. It answers requests from
// New on; its webhook sender runs between Start and Stop.
type Server struct {
	startstop.Base
	opts  Options
	clock floodgate.Clock
	log   *slog.Logger
	hooks *webhooks // nil without a WebhookURL

	pagesOnce sync.Once
	pages     *http.ServeMux

	// mu guards everything below. Handlers hold it only to read or change
	// state, never while waiting (latency, processing time, network).
	mu        sync.Mutex
	cfg       Config
	global    *rate.Limiter
	endpoints map[string]*rate.Limiter
	rng       *rand.Rand
	pis       map[string]*paymentIntent
	order     []*paymentIntent // by (Created, Seq): the list order, reversed
	pms       map[string]*paymentMethod
	charges   map[string]*paymentIntent
	refunds   map[string]*paymentIntent
	seq       int64
	idem      *idemStore
	events    *eventLog
	eventSeq  int64
	// delivered lists the events delivered since the journal's last
	// write, which the next write records.
	delivered []string
	journal   *journal
	stats     Counts
	// apiVersion is the api_version of the events.
	apiVersion string

	// beforeExec, when set, runs after a write's idempotency key is
	// reserved and before it executes; tests use it to hold a request in
	// flight.
	beforeExec atomic.Pointer[func()]

	closeOnce sync.Once
	closeErr  error
}

// New returns a sandbox, replaying Options.StatePath when it is set.
// Start sends its webhooks; Close it when done.
func New(opts Options) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		opts:    opts,
		clock:   opts.Clock,
		log:     opts.Logger,
		cfg:     opts.config(),
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		pis:     map[string]*paymentIntent{},
		pms:     map[string]*paymentMethod{},
		charges: map[string]*paymentIntent{},
		refunds: map[string]*paymentIntent{},
		idem:    newIdemStore(opts.IdempotencyRetention, opts.MaxIdempotencyKeys),
		events:  newEventLog(opts.MaxEvents),

		apiVersion: cmp.Or(opts.WebhookAPIVersion, stripe.APIVersion),
	}
	s.resetLimiters()
	if opts.StatePath != "" {
		j, err := openJournal(opts.StatePath, s)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		s.journal = j
	}
	if opts.WebhookURL != "" {
		s.hooks = newWebhooks(s, seed)
	}
	return s, nil
}

var _ startstop.Service = (*Server)(nil)

// Start sends webhooks, when Options.WebhookURL is set, until Stop:
// events queued meanwhile wait for it.
func (s *Server) Start(ctx context.Context) error {
	if _, ok := s.StartInit(ctx); !ok {
		return nil
	}
	if s.hooks != nil {
		s.Go(s.hooks.run)
	}
	return s.StartDone(nil)
}

// Stop stops the webhook sender; events waiting for a retry are dropped,
// those still queued wait for the next Start.
func (s *Server) Stop() { s.Base.Stop() }

// Close stops the webhook sender and closes the journal, having written
// to it the deliveries it does not hold yet. It is safe to call more than
// once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.Stop()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.journal == nil {
			return
		}
		if len(s.delivered) > 0 {
			recs := make([]record, len(s.delivered))
			for i, id := range s.delivered {
				recs[i] = record{Kind: "dlv", Dlv: id}
			}
			if err := s.journal.append(recs); err != nil {
				// Those events read as not delivered after a restart.
				s.log.Error("sandbox journal: the latest webhook deliveries could not be recorded", "events", len(recs), "err", err)
			}
			s.delivered = nil
		}
		s.closeErr = s.journal.close()
		s.journal = nil
	})
	return s.closeErr
}

// Config returns the current runtime behaviour.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// SetConfig changes the runtime behaviour; new rate limits start with a
// full bucket.
func (s *Server) SetConfig(c Config) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cfg
	s.cfg = c
	if old.RateLimit != c.RateLimit || old.EndpointRateLimit != c.EndpointRateLimit {
		s.resetLimiters()
	}
	s.log.Info("sandbox config changed", "config", c)
	return nil
}

// resetLimiters builds the rate limiters for s.cfg; s.mu is held (or s is
// not shared yet).
func (s *Server) resetLimiters() {
	s.global = nil
	if s.cfg.RateLimit > 0 {
		s.global = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), burst(s.cfg.RateLimit))
	}
	s.endpoints = map[string]*rate.Limiter{}
}

// burst is the bucket size for a rate: one second's worth, as Stripe's
// per-second limits allow.
func burst(r float64) int {
	return max(1, int(math.Ceil(r)))
}

// ServeHTTP serves Stripe's API under /v1/ and the sandbox's own pages under
// /_sandbox/. Every answer is dated by Options.Clock.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &datedWriter{ResponseWriter: rw, clock: s.clock}
	reqID := newID("req_", 14)
	w.Header().Set("Request-Id", reqID)
	if strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		s.serveSandbox(w, r)
		return
	}
	s.serveAPI(w, r, reqID)
}

// datedWriter sets the Date header from the sandbox's clock when the
// answer's header is written (net/http would use the machine's), so that a
// client whose tests move the clock by hand reads one consistent provider
// time: an object's created is never later than the Date of the answer
// that made it.
type datedWriter struct {
	http.ResponseWriter
	clock floodgate.Clock
	dated bool
}

func (w *datedWriter) WriteHeader(code int) {
	if !w.dated {
		w.dated = true
		w.Header().Set("Date", w.clock.Now().UTC().Format(http.TimeFormat))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *datedWriter) Write(b []byte) (int, error) {
	if !w.dated {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (abort).
func (w *datedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, reqID string) {
	// Stripe's API answers browsers too (Stripe.js tokenises cards with a
	// publishable key), so it allows any origin.
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Request-Id, Idempotent-Replayed, Original-Request, Stripe-Should-Retry, Stripe-Rate-Limited-Reason")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, Stripe-Version")
		h.Set("Access-Control-Max-Age", "300")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if s.opts.Arrive != nil && !s.opts.Arrive(r) {
		abort(w)
		return
	}
	version := r.Header.Get("Stripe-Version")
	if version == "" {
		version = stripe.APIVersion
	}
	h.Set("Stripe-Version", version)

	s.mu.Lock()
	cfg := s.cfg
	delay := cfg.Latency
	if cfg.LatencyJitter > 0 {
		delay += time.Duration(s.rng.Int64N(int64(cfg.LatencyJitter)))
	}
	s.mu.Unlock()

	switch cfg.Outage {
	case OutageReset:
		s.count(func(c *Counts) { c.Outage++ })
		abort(w)
		return
	case OutageUnavailable:
		s.count(func(c *Counts) { c.Outage++ })
		e := errInternal("The API is unavailable (simulated outage). Please try again later.")
		e.status, e.shouldRetry = http.StatusServiceUnavailable, "true"
		errorResponse(e).write(w)
		return
	}
	// The body is read before waiting: only then can net/http notice a
	// client that hangs up during the wait.
	raw := r.URL.RawQuery
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			errorResponse(errInvalid("", "", "The request body could not be read or is too large.")).write(w)
			return
		}
		raw = string(b)
	}
	if delay > 0 && !sleep(r.Context(), delay) {
		return // The client gave up; nothing was executed.
	}

	ep, id := route(r.Method, r.URL.Path)
	scope, aerr := s.authenticate(r, ep != nil && ep.publishable)
	if aerr != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="Stripe"`)
		errorResponse(aerr).write(w)
		return
	}
	if ep == nil {
		errorResponse(errUnrecognized(r.Method, r.URL.Path)).write(w)
		return
	}
	if reason := s.admit(ep.name); reason != "" {
		errorResponse(&apiError{status: http.StatusTooManyRequests, Type: typeInvalidRequest, Code: "rate_limit",
			Message:    "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
			rateReason: reason}).write(w)
		return
	}

	f, err := parseForm(raw)
	if err != nil {
		errorResponse(errInvalid("", "", fmt.Sprintf("Invalid request: %v.", err))).write(w)
		return
	}
	run, perr := ep.handle(f, id)
	if r.Method != http.MethodPost {
		if perr != nil {
			errorResponse(perr).write(w)
			return
		}
		s.mu.Lock()
		x := s.newExec(r, reqID, "")
		resp := s.safeRun(run, x)
		s.mu.Unlock()
		resp.write(w)
		return
	}
	s.serveWrite(w, r, reqID, scope, f, run, perr)
}

// serveWrite executes a POST with Stripe's idempotency semantics and the
// configured faults.
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, reqID, scope string, f *form, run func(*exec) *response, perr *apiError) {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		errorResponse(errInvalid("", "", fmt.Sprintf("Idempotency-Key must be at most %d characters long.", maxIdempotencyKey))).write(w)
		return
	}
	if key != "" {
		w.Header().Set("Idempotency-Key", key)
	}
	sum := sha256.Sum256([]byte(r.Method + " " + r.URL.Path + "\n" + f.canonical()))
	fp := hex.EncodeToString(sum[:])

	s.mu.Lock()
	now := s.clock.Now()
	var entry *idemEntry
	if key != "" {
		if e := s.idem.get(scope, key, now); e != nil {
			switch {
			case e.Fingerprint != fp:
				s.stats.IdempotencyErrors++
				s.mu.Unlock()
				errorResponse(idempotencyMismatch(key, r.URL.Path, e.Endpoint)).write(w)
			case e.pending:
				s.stats.IdempotencyErrors++
				s.mu.Unlock()
				errorResponse(&apiError{status: http.StatusConflict, Type: typeIdempotency, Code: "idempotency_key_in_use", shouldRetry: "true",
					Message: fmt.Sprintf("There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): %s. Please try again later.", key)}).write(w)
			default:
				s.stats.Replays++
				resp := e.response()
				s.mu.Unlock()
				w.Header().Set("Idempotent-Replayed", "true")
				w.Header().Set("Original-Request", e.RequestID)
				resp.write(w)
			}
			return
		}
	}
	if perr != nil {
		// Stripe stores nothing for a request that failed validation.
		s.mu.Unlock()
		errorResponse(perr).write(w)
		return
	}
	if key != "" {
		entry = s.idem.reserve(scope, key, fp, reqID, now)
		if entry == nil {
			s.mu.Unlock()
			errorResponse(errInternal("The sandbox's idempotency store is full of requests in flight.")).write(w)
			return
		}
		entry.Endpoint = r.URL.Path
	}
	cfg := s.cfg
	s.mu.Unlock()

	// From here the request is executing: Stripe finishes it whatever the
	// client does, so neither the processing time nor the rest of the
	// work watches the client's context.
	if cfg.ProcessingTime > 0 {
		time.Sleep(cfg.ProcessingTime)
	}
	if f := s.beforeExec.Load(); f != nil {
		(*f)()
	}

	s.mu.Lock()
	x := s.newExec(r, reqID, key)
	var resp *response
	if cfg.FailRate > 0 && s.rng.Float64() < cfg.FailRate {
		s.stats.InjectedFailures++
		e := errInternal("An unknown error occurred while processing the request. (Injected by the sandbox before anything was charged.)")
		e.shouldRetry = "false"
		resp = errorResponse(e)
	} else {
		resp = s.safeRun(run, x)
	}
	if entry != nil {
		s.idem.complete(entry, resp)
		x.saveIdem(entry)
	}
	if err := s.commit(x); err != nil {
		// commit has undone the change and released the key: the 500
		// is not stored, and a retry of the same key executes anew.
		s.log.Error("sandbox journal write failed; the request changed nothing and is answered 500", "err", err, "request_id", reqID)
		resp = errorResponse(errJournal())
	}
	lose := cfg.LoseRate > 0 && s.rng.Float64() < cfg.LoseRate
	if lose {
		s.stats.LostAnswers++
	}
	s.publish(x)
	s.mu.Unlock()

	if lose {
		abort(w)
		return
	}
	resp.write(w)
}

// idempotencyMismatch is Stripe's refusal of a key reused for another
// request: on another endpoint (path, as first used on first), or with
// other parameters.
func idempotencyMismatch(key, path, first string) *apiError {
	msg := fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", key)
	if first != "" && first != path {
		msg = fmt.Sprintf("Keys for idempotent requests can only be used for the same endpoint they were first used for ('%s' vs '%s'). Try using a key other than '%s' if you meant to execute a different request.", path, first, key)
	}
	return &apiError{status: http.StatusBadRequest, Type: typeIdempotency, Message: msg}
}

// safeRun executes a handler's work; a panic becomes a 500, as Stripe
// answers for its own bugs, so that a stored key never stays in flight.
func (s *Server) safeRun(run func(*exec) *response, x *exec) (resp *response) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("sandbox handler panicked", "panic", p, "request_id", x.reqID)
			resp = errorResponse(errInternal("An unknown error occurred while processing the request."))
		}
	}()
	return run(x)
}

// authenticate checks the API key the way Stripe does and returns the scope
// idempotency keys live in (a hash of the key, so the journal holds no
// secret). A publishable test key is accepted only where Stripe accepts one
// (creating payment methods, as Stripe.js does in the browser).
func (s *Server) authenticate(r *http.Request, publishable bool) (string, *apiError) {
	key := ""
	if h := r.Header.Get("Authorization"); h != "" {
		if v, ok := strings.CutPrefix(h, "Bearer "); ok {
			key = strings.TrimSpace(v)
		} else if u, _, ok := r.BasicAuth(); ok {
			key = u
		}
	}
	unauthorized := func(msg string) (string, *apiError) {
		return "", &apiError{status: http.StatusUnauthorized, Type: typeInvalidRequest, Message: msg}
	}
	switch {
	case key == "":
		return unauthorized("You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.")
	case strings.HasPrefix(key, "sk_live_") || strings.HasPrefix(key, "rk_live_") || strings.HasPrefix(key, "pk_live_"):
		return unauthorized(fmt.Sprintf("The sandbox refuses live mode keys (%s); use a test mode key (sk_test_...).", redactKey(key)))
	case strings.HasPrefix(key, "pk_test_") && publishable && len(key) > len("pk_test_"):
		sum := sha256.Sum256([]byte(key))
		return hex.EncodeToString(sum[:8]), nil
	case strings.HasPrefix(key, "pk_"):
		return unauthorized("This API call cannot be made with a publishable API key. Please use a secret API key. You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.")
	}
	valid := (strings.HasPrefix(key, "sk_test_") || strings.HasPrefix(key, "rk_test_")) && len(key) > len("sk_test_")
	if valid && len(s.opts.APIKeys) > 0 {
		valid = false
		for _, k := range s.opts.APIKeys {
			if k == key {
				valid = true
				break
			}
		}
	}
	if !valid {
		return unauthorized("Invalid API Key provided: " + redactKey(key))
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8]), nil
}

// redactKey shows a key the way Stripe's messages do.
func redactKey(k string) string {
	if len(k) <= 12 {
		return strings.Repeat("*", len(k))
	}
	return k[:8] + strings.Repeat("*", len(k)-12) + k[len(k)-4:]
}

// admit applies the rate limits and returns the Stripe-Rate-Limited-Reason
// of a refusal, or "".
func (s *Server) admit(endpoint string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.stats.Requests++
	if s.stats.ByEndpoint == nil {
		s.stats.ByEndpoint = map[string]int64{}
	}
	s.stats.ByEndpoint[endpoint]++
	if s.global != nil && !s.global.AllowN(now, 1) {
		s.stats.RateLimited++
		return "global-rate"
	}
	if s.cfg.EndpointRateLimit > 0 {
		l := s.endpoints[endpoint]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(s.cfg.EndpointRateLimit), burst(s.cfg.EndpointRateLimit))
			s.endpoints[endpoint] = l
		}
		if !l.AllowN(now, 1) {
			s.stats.RateLimited++
			return "endpoint-rate"
		}
	}
	return ""
}

func (s *Server) count(f func(*Counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// abort ends the exchange without an answer, as a network that lost the
// response would: the connection is closed.
func abort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	// Without hijacking (HTTP/2), aborting the handler resets the stream.
	panic(http.ErrAbortHandler)
}

// sleep waits d or until ctx is done, reporting whether it waited in full.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// baseURL is where a browser reaches the sandbox: Options.PublicURL, or the
// scheme and Host of the request.
func (s *Server) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimSuffix(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// ListenAndServe runs a sandbox on addr until ctx is done, then shuts it
// down (in-flight requests get 5 seconds). ready, when not nil, is called
// with the bound address once the sandbox accepts connections (useful with
// port 0).
func ListenAndServe(ctx context.Context, addr string, opts Options, ready func(net.Addr)) error {
	s, err := New(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("sandbox listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("sandbox: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sandbox: %w", err)
	}
	return s.Close()
}
