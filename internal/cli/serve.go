package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/dispatch"
	"github.com/floodgate/floodgate/internal/httpapi"
	"github.com/floodgate/floodgate/internal/ingest"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/postgres"
	"github.com/floodgate/floodgate/internal/sandbox"
	"github.com/floodgate/floodgate/internal/sqlite"
	"github.com/floodgate/floodgate/internal/startstop"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
	"github.com/floodgate/floodgate/internal/web"
)

func serve(ctx context.Context, args []string, env Env) error {
	cfg, err := loadConfig("serve", args, env)
	if cfg == nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := checkStore(cfg); err != nil {
		return err
	}
	m := &Main{Config: cfg, Stdout: env.Stdout, Logger: newLogger(env.Stderr, cfg.LogLevel, cfg.LogFormat)}
	for _, w := range cfg.Warnings() {
		m.Logger.Warn(w)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		return err
	}
	<-ctx.Done()
	m.Logger.Info("shutting down")
	return m.Close()
}

// Main is one running floodgate node. Tests start it on 127.0.0.1:0 with a
// temporary data directory, exactly as `floodgate serve` runs it.
type Main struct {
	Config *config.Config
	Logger *slog.Logger
	// Stdout receives the once-only admin token message.
	Stdout io.Writer
	// Clock, when set, replaces the system clock (tests).
	Clock floodgate.Clock
	// GuardClock, when set, is the card-testing limits' clock instead of
	// Clock (tests hold it still to count a minute's allowance exactly).
	GuardClock floodgate.Clock

	// Set by Open.
	Addr       net.Addr
	Store      floodgate.Store
	Ingest     *ingest.Service
	Guard      *ingest.Guard
	Dispatcher *dispatch.Dispatcher
	// Control is charging's switch and gauge: pause, breaker, readiness.
	Control *dispatch.Control
	Sandbox *sandbox.Server
	Metrics *metrics.Metrics
	// SandboxURL is the in-process sandbox's API base, when it runs.
	SandboxURL string
	// MetricsAddr is where /metrics is served; nil when it is not.
	MetricsAddr net.Addr

	webhookSecrets []string
	srv            *http.Server
	sandboxSrv     *http.Server
	metricsSrv     *http.Server
	hub            *httpapi.Hub
	webhooks       *dispatch.Webhooks
	// services are the long-running parts, started in order by Open and
	// stopped in reverse by Close.
	services  *startstop.Group
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open starts every part in dependency order and begins serving. It
// returns once the listener is bound.
func (m *Main) Open(ctx context.Context) error {
	cfg := m.Config
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if m.Clock == nil {
		m.Clock = floodgate.SystemClock{}
	}
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	admin, pendingToken, err := m.adminToken()
	if err != nil {
		return err
	}
	m.Metrics = metrics.New()

	store, single, err := openStore(ctx, cfg, m.Clock)
	if err != nil {
		return err
	}
	m.Store = store

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	m.Addr = ln.Addr()
	if err := m.serveMetrics(); err != nil {
		_ = ln.Close()
		return err
	}

	provider, err := m.openProvider(ctx)
	if err != nil {
		_ = ln.Close()
		return err
	}

	guardClock := m.GuardClock
	if guardClock == nil {
		guardClock = m.Clock
	}
	m.Guard = ingest.NewGuard(ingest.GuardOptions{PerEmail: cfg.EmailLimit, SuspectAttempts: cfg.AddressLimit,
		DeclineLimit: cfg.AddressDeclineLimit, Tracked: cfg.LimitTracked, Clock: guardClock})
	m.Ingest, err = ingest.New(ctx, store, ingest.Options{Clock: m.Clock, Batch: ingest.BatcherOptions{
		MaxBatch: cfg.BatchMax, MaxWait: cfg.BatchWait, Queue: cfg.IngestQueue, Observer: m.Metrics,
	},
		Guard:   m.Guard,
		Refused: func(reason string) { m.Metrics.Blocked.WithLabelValues(reason).Inc() },
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	m.hub = httpapi.NewHub(store, httpapi.HubOptions{Interval: cfg.TotalsInterval, MaxSubscribers: cfg.SSEMaxSubscribers,
		Metrics: m.Metrics, Logger: m.Logger, Clock: m.Clock})
	// The long-running parts start in this order and stop in reverse.
	var services []startstop.Service
	if m.Sandbox != nil {
		services = append(services, m.Sandbox)
	}
	services = append(services, m.hub)
	services = append(services, m.dispatchServices(store, provider, single)...)
	m.services = startstop.NewGroup(services...)
	m.Metrics.GaugeFunc("floodgate_ingest_queue_depth", "Donations waiting for a group commit.",
		func() float64 { return float64(m.Ingest.QueueLen()) })
	m.Metrics.GaugeFunc("floodgate_provider_breaker_state", "This node's circuit breaker on the provider: 0 closed, 1 probing, 2 open.",
		m.Control.BreakerState)
	m.Metrics.GaugeFunc("floodgate_charging_paused", "1 while an operator has paused charging (every node).", m.Control.Paused)
	m.Metrics.GaugeFunc("floodgate_provider_up", "1 while the payment provider answers, 0 while it is unreachable or refuses floodgate's credentials.",
		m.Control.ProviderUp)
	m.Metrics.GaugeFunc("floodgate_backlog_waiting", "Donations accepted and waiting to be charged (all nodes).",
		func() float64 { w, _ := m.Dispatcher.Backlog(); return float64(w) })
	m.Metrics.GaugeFunc("floodgate_backlog_age_seconds", "Age of the oldest donation waiting to be charged.",
		func() float64 { _, a := m.Dispatcher.Backlog(); return a.Seconds() })

	if cfg.Demo {
		if err := createDemo(ctx, store, m.Clock.Now()); err != nil {
			_ = ln.Close()
			return err
		}
	}

	var sandboxHandler http.Handler
	if m.Sandbox != nil {
		sandboxHandler = m.Sandbox
	}
	api := httpapi.New(httpapi.Config{
		Store: store, Ingest: m.Ingest, Line: m.Dispatcher, Hub: m.hub, Metrics: m.Metrics, Logger: m.Logger,
		Clock: m.Clock, AdminTokenHash: admin.Hash, SSEHeartbeat: cfg.SSEHeartbeat,
		Ready: func(ctx context.Context) (string, error) {
			if err := store.Ping(ctx); err != nil {
				return "", fmt.Errorf("store: %w", err)
			}
			return m.Control.Ready(ctx)
		},
		Pages:          web.New(web.Options{Payments: cfg.Payments}),
		Sandbox:        sandboxHandler,
		Control:        m.Control,
		TrustedProxies: cfg.TrustedProxyPrefixes(),
		Events:         fgstripe.Webhooks{Secrets: m.webhookSecrets},
		Apply:          m.webhooks.Apply,
		// A webhook body is a few KB: it gets a few seconds, never more
		// than any request.
		WebhookReadTimeout: min(cfg.HTTPReadTimeout, 5*time.Second),
	})
	if len(m.webhookSecrets) == 0 {
		m.Logger.Warn("no STRIPE_WEBHOOK_SECRET: provider webhooks will be refused, and 3-D Secure results arrive only through the dispatcher")
	}
	m.srv = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: min(cfg.HTTPReadTimeout, 5*time.Second),
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	// Live streams end as the server shuts down, or it would wait for
	// them; browsers reconnect elsewhere.
	m.srv.RegisterOnShutdown(m.hub.Stop)
	conns := httpapi.NewConnLimiter(ln, httpapi.ConnLimits{
		Max: cfg.MaxConns, PerClient: cfg.MaxConnsPerClient, RetryAfter: time.Second, Metrics: m.Metrics,
		// Every donor comes through a trusted proxy, and a connection
		// from the machine itself is a local proxy or an operator's
		// tool: none of them is one client.
		Uncapped: append(cfg.TrustedProxyPrefixes(), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")),
	})
	m.srv.ConnState = conns.ConnState
	m.Metrics.GaugeFunc("floodgate_http_connections_open", "HTTP connections open on the public port.",
		func() float64 { open, _ := conns.Open(); return float64(open) })
	m.Metrics.GaugeFunc("floodgate_http_connections_idle", "Open HTTP connections between requests, or silent since they opened: the first to be closed when connections run short.",
		func() float64 { _, idle := conns.Open(); return float64(idle) })

	if err := m.services.Start(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(m.proxyProtocol(conns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server stopped", "err", err)
		}
	}()
	if pendingToken != "" {
		if err := m.keepAdminToken(admin, pendingToken); err != nil {
			return err
		}
	}
	m.Logger.Info("floodgate serving", "addr", m.Addr.String(), "metrics", m.MetricsURL(), "store", storeName(cfg), "payments", cfg.Payments,
		"provider_rate", cfg.ProviderRate, "provider_global_rate", cfg.ProviderGlobalRate, "demo", cfg.Demo)
	if m.SandboxURL != "" {
		// A rehearsal reads the ledger here to prove nothing was charged twice.
		m.Logger.Info("in-process sandbox", "api", m.SandboxURL, "ledger", m.SandboxURL+"/_sandbox/ledger")
	}
	return nil
}

// dispatchServices builds the services that charge gifts, in the order
// they start: each relies on those before it while it runs, and they stop
// in reverse.
func (m *Main) dispatchServices(store floodgate.Store, provider floodgate.Provider, single bool) []startstop.Service {
	cfg, clock, log, met := m.Config, m.Clock, m.Logger, m.Metrics
	policy := dispatch.PolicyFor(cfg.KeyRetention)
	m.Control = dispatch.NewControl(store, dispatch.ControlOptions{Clock: clock, Logger: log})
	link := dispatch.NewLink(store, provider, m.Control, dispatch.LinkOptions{Rate: cfg.ProviderRate, GlobalRate: cfg.ProviderGlobalRate,
		LookupShare: cfg.LookupShare, SharedBudgets: !single, CallTimeout: cfg.ProviderTimeout, Clock: clock, Logger: log, Metrics: met})
	settler := dispatch.NewSettler(store, dispatch.SettlerOptions{Policy: policy, Clock: clock, Logger: log, Metrics: met,
		Settled: func(*floodgate.PaymentOrder) { m.hub.Notify() },
		// The card-testing defence learns every charge's outcome by
		// client address.
		Outcome: m.Guard.Learn,
	})
	reconciler := dispatch.NewReconciler(store, link, dispatch.ReconcilerOptions{Policy: policy, Clock: clock, Logger: log, Metrics: met})
	owner := floodgate.NewID("dispatcher_")
	sweeper := dispatch.NewSweeper(store, link, settler, dispatch.SweeperOptions{Owner: owner, Policy: policy, Clock: clock, Logger: log, Metrics: met})
	cards := dispatch.NewCardGuard(store, link, settler, dispatch.CardGuardOptions{Block: cfg.CardBlock, Arm: cfg.CardTestingArm,
		// Gifts from suspect addresses are screened before they are sent.
		Screen: func(o *floodgate.PaymentOrder) bool { return m.Guard.Screen(o.ClientAddr) },
		Clock:  clock, Logger: log, Metrics: met})
	m.webhooks = dispatch.NewWebhooks(store, settler, dispatch.WebhooksOptions{Link: link, Policy: policy, Clock: clock, Logger: log, Metrics: met})
	expirer := dispatch.NewExpirer(store, link, settler, dispatch.ExpirerOptions{ActionTimeout: cfg.ActionTimeout, Clock: clock, Logger: log})
	m.Dispatcher = dispatch.New(store, dispatch.Parts{Link: link, Settler: settler, Reconciler: reconciler, Screen: cards},
		dispatch.Options{Owner: owner, Workers: cfg.DispatchWorkers, Queue: cfg.DispatchQueue, Claim: cfg.DispatchClaim, Lease: cfg.Lease,
			ReleaseAllOnStart: single, Policy: policy, Clock: clock, Logger: log, Metrics: met})
	return []startstop.Service{m.Control, link, reconciler, sweeper, cards, m.webhooks, expirer, m.Dispatcher}
}

// serveMetrics serves /metrics on FLOODGATE_METRICS_ADDR, apart from the
// public port: what the node is doing is for its operators, not for
// anyone who can reach the donation page.
func (m *Main) serveMetrics() error {
	addr := m.Config.MetricsAddr
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener (FLOODGATE_METRICS_ADDR=%s; empty turns it off): %w", addr, err)
	}
	m.MetricsAddr = ln.Addr()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Metrics.Handler())
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug)}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

// MetricsURL is the node's /metrics URL on loopback ("" when it serves
// none).
func (m *Main) MetricsURL() string {
	if m.MetricsAddr == nil {
		return ""
	}
	return "http://" + loopback(m.MetricsAddr) + "/metrics"
}

// proxyProtocol wraps the connection limiter, with the PROXY protocol on,
// so that the header of a trusted proxy is read on each connection it
// opens (by the connection's own goroutine, never in the accept loop);
// the limits still apply to every connection.
func (m *Main) proxyProtocol(limited net.Listener) net.Listener {
	cfg := m.Config
	if !cfg.ProxyProtocol {
		return limited
	}
	trusted := cfg.TrustedProxyPrefixes()
	return &proxyproto.Listener{
		Listener:          limited,
		ReadHeaderTimeout: min(cfg.HTTPReadTimeout, 5*time.Second),
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			// A trusted proxy may send a header (its health checks need
			// not); from anyone else a header is a forgery, and the
			// connection is refused.
			if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil {
				ip := ap.Addr().Unmap()
				for _, p := range trusted {
					if p.Contains(ip) {
						return proxyproto.USE, nil
					}
				}
			}
			return proxyproto.REJECT, nil
		},
	}
}

// URL is the node's base URL on loopback.
func (m *Main) URL() string {
	return "http://" + loopback(m.Addr)
}

func loopback(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := "127.0.0.1"
	if !tcp.IP.IsUnspecified() && tcp.IP != nil {
		host = tcp.IP.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// Close shuts down in order: stop accepting and finish requests in flight
// (each waits for its commit), commit what is still queued, stop charging
// (gifts in flight keep their keys), then close the provider and the store.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		timeout := 15 * time.Second
		if m.Config != nil && m.Config.ShutdownTimeout > 0 {
			timeout = m.Config.ShutdownTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if m.srv != nil {
			if err := m.srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
				_ = m.srv.Close()
			}
		}
		if m.Ingest != nil {
			m.Ingest.Stop()
		}
		if m.services != nil {
			m.services.Stop()
		}
		if m.cancel != nil {
			m.cancel()
		}
		if m.metricsSrv != nil {
			_ = m.metricsSrv.Close()
		}
		// The dispatcher was the sandbox's last client.
		if m.sandboxSrv != nil {
			if err := m.sandboxSrv.Shutdown(ctx); err != nil {
				_ = m.sandboxSrv.Close()
			}
		}
		m.wg.Wait()
		if m.Sandbox != nil {
			errs = append(errs, m.Sandbox.Close())
		}
		if m.Store != nil {
			errs = append(errs, m.Store.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

func storeName(cfg *config.Config) string {
	if cfg.StoreEngine() == config.EngineSQLite {
		return "sqlite:" + cfg.SQLitePath()
	}
	return cfg.StoreEngine()
}

// openStore picks the store engine by the store URL's scheme. single is
// true for an engine only one process may use (SQLite): its dispatcher can
// resume every in-flight gift at start.
func openStore(ctx context.Context, cfg *config.Config, clock floodgate.Clock) (floodgate.Store, bool, error) {
	switch cfg.StoreEngine() {
	case config.EnginePostgres:
		s, err := postgres.Open(ctx, postgres.Options{URL: cfg.StoreURL, MaxConns: cfg.DBMaxConns, Clock: clock})
		return s, false, err
	case config.EngineSQLite:
		path := cfg.SQLitePath()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
		s, err := sqlite.Open(ctx, sqlite.Options{Path: path, ReadConns: cfg.ReadConns, Clock: clock})
		return s, true, err
	}
	return nil, false, fmt.Errorf("store %q: unknown engine (valid: sqlite, sqlite:///path.db, postgres://...)", cfg.StoreURL)
}

// openProvider returns the payment provider. In sandbox mode without an
// API base, the sandbox runs in this process on its own loopback listener
// (so it outlives the public server during shutdown) and is also mounted
// at /sandbox/ for the browser's 3-D Secure page. The dispatcher reaches
// it through stripe-go exactly as it would reach Stripe.
func (m *Main) openProvider(ctx context.Context) (floodgate.Provider, error) {
	cfg := m.Config
	key, base := cfg.StripeKey, cfg.StripeAPIBase
	m.webhookSecrets = cfg.WebhookSecrets()
	if cfg.SandboxInProcess() {
		// The in-process sandbox signs its webhooks with the configured
		// secret, or with one made up for this process, and delivers them
		// to this node.
		if len(m.webhookSecrets) == 0 {
			var b [24]byte
			_, _ = rand.Read(b[:])
			m.webhookSecrets = []string{"whsec_" + hex.EncodeToString(b[:])}
		}
		public := strings.TrimRight(cfg.PublicURL, "/")
		if public == "" {
			public = "http://" + browserHost(m.Addr)
		}
		sb, err := sandbox.New(sandbox.Options{
			RateLimit: cfg.SandboxRateLimit, Latency: cfg.SandboxLatency, LatencyJitter: cfg.SandboxLatencyJitter,
			FailRate: cfg.SandboxFailRate, LoseRate: cfg.SandboxLoseRate,
			IdempotencyRetention: cfg.SandboxIdempotencyRetention,
			WebhookURL:           "http://" + loopback(m.Addr) + "/v1/webhooks/stripe",
			WebhookSecret:        m.webhookSecrets[0],
			PublicURL:            public + "/sandbox",
			StatePath:            filepath.Join(cfg.DataDir, "sandbox.journal"),
			Clock:                m.Clock, Logger: m.Logger.With("component", "sandbox"),
		})
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		m.Sandbox = sb
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		m.sandboxSrv = &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := m.sandboxSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Logger.Error("sandbox server stopped", "err", err)
			}
		}()
		base = "http://" + ln.Addr().String()
		m.SandboxURL = base
		if key == "" {
			key = "sk_test_floodgate_sandbox"
		}
	} else if cfg.Payments == "sandbox" && key == "" {
		key = "sk_test_floodgate_sandbox"
	}
	return fgstripe.New(fgstripe.Options{SecretKey: key, APIBase: base, Timeout: cfg.ProviderTimeout, Clock: m.Clock,
		Logger: m.Logger.With("component", "stripe")})
}

// browserHost is the host:port a browser on this machine reaches addr at.
func browserHost(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() || tcp.IP.IsLoopback() {
		if ok {
			return net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
		}
	}
	return a.String()
}
