package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/ingest"
	"github.com/floodgate/floodgate/internal/metrics"
)

// Line tells a waiting donor where they stand.
type Line interface {
	// Place returns how many donations are ahead of d and how long until
	// d is expected to be charged. ok is false when d is not waiting.
	Place(d *floodgate.Donation) (position int64, eta time.Duration, ok bool)
	// Charging says whether gifts are being charged now and, while
	// waiting for the provider, when the next probe is due.
	Charging() (state floodgate.ChargingState, until time.Time)
}

// Control is the operator's switch on charging.
type Control interface {
	// Pause pauses (or resumes) charging on every node.
	Pause(ctx context.Context, paused bool) error
}

// Config wires a Server.
type Config struct {
	Store   floodgate.Store
	Ingest  *ingest.Service
	Line    Line
	Hub     *Hub
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Clock   floodgate.Clock
	// AdminTokenHash returns the SHA-256 of the admin token (it may
	// change while the server runs: a token reset).
	AdminTokenHash func() [32]byte
	// Ready reports whether the node can serve (store and provider), and
	// a note on what is degraded while it still can.
	Ready func(ctx context.Context) (string, error)
	// Pages serves the web pages (/, /c/{id}, assets); nil for none.
	Pages http.Handler
	// Sandbox, when set, is the in-process sandbox provider. Only its 3-D
	// Secure challenge pages are served, at /sandbox/_sandbox/3ds/: the
	// browser needs them, and nothing else of the provider (its API, its
	// ledger, its fault switches) belongs on the public port.
	Sandbox http.Handler
	// SSEHeartbeat is the longest silence on a live stream.
	SSEHeartbeat time.Duration
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client; a request from anywhere else is its own client.
	TrustedProxies []netip.Prefix
	// Control pauses and resumes charging; nil leaves the admin switch
	// out.
	Control Control
	// Events verifies provider webhooks; Apply acts on them. Without
	// them the webhook route answers 404.
	Events floodgate.EventParser
	Apply  func(ctx context.Context, ev *floodgate.ProviderEvent) (bool, error)
	// WebhookConcurrency bounds the webhooks read and applied at once
	// (default 32); past it a delivery is answered 503 before its body is
	// read, and the provider delivers it again.
	WebhookConcurrency int
	// WebhookReadTimeout bounds the time a webhook's body may take to
	// arrive once its headers are in (default 5s).
	WebhookReadTimeout time.Duration
}

// Server is floodgate's HTTP API.
type Server struct {
	Config
	log       *slog.Logger
	mux       *http.ServeMux
	observers sync.Map // observerKey -> prometheus.Observer
	// adminFails throttles failed admin authentications per address.
	adminFails adminThrottle
	// webhookSlots holds one token per webhook being read or applied.
	webhookSlots chan struct{}
}

// New returns a Server; Handler serves it.
func New(cfg Config) *Server {
	if cfg.Clock == nil {
		cfg.Clock = floodgate.SystemClock{}
	}
	if cfg.SSEHeartbeat <= 0 {
		cfg.SSEHeartbeat = 15 * time.Second
	}
	if cfg.Ready == nil {
		cfg.Ready = func(ctx context.Context) (string, error) { return "", cfg.Store.Ping(ctx) }
	}
	if cfg.WebhookConcurrency <= 0 {
		cfg.WebhookConcurrency = defaultWebhookConcurrency
	}
	if cfg.WebhookReadTimeout <= 0 {
		cfg.WebhookReadTimeout = defaultWebhookReadTimeout
	}
	s := &Server{Config: cfg, log: logger(cfg.Logger), mux: http.NewServeMux(),
		webhookSlots: make(chan struct{}, cfg.WebhookConcurrency)}
	s.routes()
	return s
}

// HashToken returns the SHA-256 of an admin token, the form it is kept in.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routes() {
	s.handle("POST /v1/campaigns", s.admin(s.createCampaign))
	s.handle("GET /v1/campaigns", s.listCampaigns)
	s.handle("GET /v1/campaigns/{id}", s.getCampaign)
	s.handle("PATCH /v1/campaigns/{id}", s.admin(s.patchCampaign))
	s.handle("GET /v1/campaigns/{id}/totals", s.getTotals)
	s.handle("GET /v1/campaigns/{id}/events", s.events)
	s.handle("POST /v1/campaigns/{id}/donations", s.donate)
	s.handle("GET /v1/donations/{id}", s.getDonation)
	s.handle("POST /v1/donations/{id}/payment_method", s.newPaymentMethod)
	s.handle("POST /v1/donations/{id}/cancel", s.cancelDonation)
	s.handle("POST /v1/webhooks/stripe", s.stripeWebhook)
	s.handle("GET /v1/admin/charging", s.admin(s.getCharging))
	s.handle("POST /v1/admin/charging", s.admin(s.setCharging))

	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.handle("GET /readyz", s.readyz)
	if s.Sandbox != nil {
		s.mux.Handle("/sandbox/_sandbox/3ds/", http.StripPrefix("/sandbox", s.Sandbox))
	}
	if s.Pages != nil {
		s.mux.Handle("/", s.Pages)
	}
	// Anything else under /v1/ is a problem+json 404, not a page.
	s.handle("/v1/", func(w http.ResponseWriter, r *http.Request) error {
		return floodgate.Errorf(floodgate.ENOTFOUND, "No route for %s %s.", r.Method, r.URL.Path)
	})
}

// handle registers h at pattern with error handling and metrics.
func (s *Server) handle(pattern string, h handlerFunc) {
	route := pattern
	if _, p, ok := strings.Cut(pattern, " "); ok {
		route = p
	}
	s.mux.Handle(pattern, s.instrument(route, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}))
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (SSE).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observerKey names one latency histogram series.
type observerKey struct {
	route, method string
	code          int
}

// observer returns the latency series for a request, resolving its labels
// once per series rather than once per request.
func (s *Server) observer(route, method string, code int) prometheus.Observer {
	k := observerKey{route, method, code}
	if o, ok := s.observers.Load(k); ok {
		return o.(prometheus.Observer)
	}
	o := s.Metrics.HTTPDuration.WithLabelValues(route, method, strconv.Itoa(code))
	s.observers.Store(k, o)
	return o
}

func (s *Server) instrument(route string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "route", route, "panic", v)
				if sw.code == 0 {
					s.writeError(sw, r, fmt.Errorf("panic: %v", v))
				}
			}
			if s.Metrics != nil {
				code := sw.code
				if code == 0 {
					code = http.StatusOK
				}
				s.observer(route, r.Method, code).Observe(time.Since(start).Seconds())
			}
		}()
		next(sw, r)
	})
}

// Handler returns the server's root handler.
func (s *Server) Handler() http.Handler { return s.mux }

// admin requires the admin token. An address that keeps failing is
// refused for a while before its token is looked at (adminThrottle).
func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		addr, now := s.clientAddr(r), s.Clock.Now()
		if wait := s.adminFails.wait(addr, now); wait > 0 {
			return &floodgate.Error{Code: floodgate.ERATELIMITED, RetryAfter: wait,
				Message: "Too many failed admin authentications from this address; try again later."}
		}
		tok, ok := bearer(r)
		if !ok {
			s.adminFailed(addr, now, r)
			return floodgate.Errorf(floodgate.EUNAUTHORIZED, "This endpoint needs Authorization: Bearer <admin token>.")
		}
		sum := sha256.Sum256([]byte(tok))
		var want [32]byte
		if s.AdminTokenHash != nil {
			want = s.AdminTokenHash()
		}
		if s.AdminTokenHash == nil || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			s.adminFailed(addr, now, r)
			return floodgate.Errorf(floodgate.EUNAUTHORIZED, "The admin token is not valid.")
		}
		return h(w, r)
	}
}

// adminFailed counts a failed admin authentication, and says in the log
// when an address starts being throttled.
func (s *Server) adminFailed(addr string, now time.Time, r *http.Request) {
	if s.adminFails.failed(addr, now) {
		s.log.Warn("admin authentication: too many failures; the address is refused for a minute",
			"addr", addr, "failures", adminFailures, "route", r.URL.Path)
	}
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// readBody reads a JSON request body with the contract's limits: 415 for
// another content type, 413 past 16 KiB.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var err error
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		mt, params, perr := mime.ParseMediaType(ct)
		if ct == "" || perr != nil || mt != "application/json" {
			return nil, floodgate.Errorf(floodgate.EMEDIATYPE, "Content-Type must be application/json, not %q.", truncate(ct, 64))
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, floodgate.Errorf(floodgate.EMEDIATYPE, "The body must be UTF-8, not %q.", truncate(cs, 32))
		}
	}
	if r.ContentLength > ingest.MaxBody {
		return nil, floodgate.Errorf(floodgate.ETOOLARGE, "The body is larger than %d bytes.", ingest.MaxBody)
	}
	var body []byte
	if n := r.ContentLength; n >= 0 {
		// The usual case: the size is known, read it in one allocation.
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, ingest.MaxBody))
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, floodgate.Errorf(floodgate.ETOOLARGE, "The body is larger than %d bytes.", ingest.MaxBody)
	}
	if err != nil {
		return nil, floodgate.Invalid("body", "could not be read")
	}
	return body, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// clientAddr is the address the request came from: the connection's
// peer, or, when that peer is a trusted proxy, the last address in
// X-Forwarded-For that is not a trusted proxy (the left part of the header
// is whatever the client wrote, and cannot be believed). From any other
// peer the header is ignored: a client that forges a new one with every
// request is still the one peer it connects from. With the PROXY protocol
// on, the peer is the address a trusted proxy's PROXY header names.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !s.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !s.trusted(hop) {
			return hop
		}
		host = hop
	}
	return host
}

func (s *Server) trusted(addr string) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	note, err := s.Ready(ctx)
	if err != nil {
		s.log.Warn("not ready", "err", err)
		return &floodgate.Error{Code: floodgate.EUNAVAILABLE, Message: "Not ready; the server log says why.", RetryAfter: time.Second}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if note != "" {
		_, _ = io.WriteString(w, "ready; "+note+"\n")
		return nil
	}
	_, _ = io.WriteString(w, "ready\n")
	return nil
}
