package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

var tokenPattern = regexp.MustCompile(`fga_[a-z0-9]+`)

// TestTokenOnlyAfterStart: a start that fails prints no admin token and
// keeps none, so the token a newcomer copies is always one that works.
func TestTokenOnlyAfterStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := loopbackDefaults(t)
	cfg.Addr = busy.Addr().String()
	var out strings.Builder
	m := &Main{Config: cfg, Stdout: &out}
	if err := m.Open(context.Background()); err == nil {
		_ = m.Close()
		t.Fatal("Open on a busy port succeeded")
	}
	_ = m.Close()
	if out.Len() != 0 {
		t.Fatalf("a failed start printed %q", out.String())
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, adminTokenFile)); err == nil {
		t.Fatal("a failed start kept an admin token hash")
	}

	cfg.Addr = "127.0.0.1:0"
	cfg.MetricsAddr = "127.0.0.1:0"
	m = &Main{Config: cfg, Stdout: &out}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok := tokenPattern.FindString(out.String())
	if tok == "" || !strings.Contains(out.String(), "floodgate admin-token reset") {
		t.Fatalf("the first successful start printed %q: want the token and how to make a new one", out.String())
	}
	if r := newClient(t, m).do("GET", "/v1/admin/charging", "", "Authorization", "Bearer "+tok); r.status != http.StatusOK {
		t.Fatalf("printed token: %d %s", r.status, r.body)
	}
}

// TestAdminTokenReset: `floodgate admin-token reset` prints a new token
// that a running node accepts (and the old one stops working) without a
// restart; with a configured token it refuses, naming the setting.
func TestAdminTokenReset(t *testing.T) {
	cfg := loopbackDefaults(t)
	var first strings.Builder
	m := &Main{Config: cfg, Stdout: &first}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	old := tokenPattern.FindString(first.String())
	c := newClient(t, m)

	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	if code := Run(context.Background(), []string{"admin-token", "reset", "--data-dir", cfg.DataDir}, env); code != ExitOK {
		t.Fatalf("reset: exit %d: %s", code, errOut.String())
	}
	tok := tokenPattern.FindString(out.String())
	if tok == "" || tok == old {
		t.Fatalf("reset printed %q", out.String())
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, adminTokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("hash file after reset: %v, %v", fi, err)
	}
	// The node looks at the file at most once a second.
	deadline := time.Now().Add(30 * time.Second)
	for c.do("GET", "/v1/admin/charging", "", "Authorization", "Bearer "+tok).status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the running node never took the new token")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := c.do("GET", "/v1/admin/charging", "", "Authorization", "Bearer "+old); r.status != http.StatusUnauthorized {
		t.Fatalf("the old token after a reset: %d", r.status)
	}

	errOut.Reset()
	env.Getenv = func(k string) string {
		if k == "FLOODGATE_ADMIN_TOKEN" {
			return strings.Repeat("x", 40)
		}
		return ""
	}
	if code := Run(context.Background(), []string{"admin-token", "reset", "--data-dir", cfg.DataDir}, env); code != ExitConfig ||
		!strings.Contains(errOut.String(), "FLOODGATE_ADMIN_TOKEN") {
		t.Fatalf("reset with a configured token: exit %d, %q", code, errOut.String())
	}
	if code := Run(context.Background(), []string{"admin-token"}, env); code != ExitConfig {
		t.Fatalf("admin-token without reset: exit %d", code)
	}
}

// TestAdminAuthThrottled: an address that keeps failing admin
// authentication is refused 429 for a while, even with the right token,
// while another address still gets in.
func TestAdminAuthThrottled(t *testing.T) {
	m := startMain(t, func(c *config.Config) { c.TrustedProxies = "127.0.0.1/32" })
	c := newClient(t, m)
	guesser := []string{"X-Forwarded-For", "203.0.113.7"}
	for i := 0; i < 10; i++ {
		r := c.do("GET", "/v1/admin/charging", "", append(guesser, "Authorization", "Bearer guess-"+strings.Repeat("a", i))...)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, r.status)
		}
	}
	r := c.do("GET", "/v1/admin/charging", "", append(guesser, "Authorization", "Bearer "+testAdminToken)...)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 10 failures: %d (Retry-After %q), want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	if r := c.do("GET", "/v1/admin/charging", "", "X-Forwarded-For", "198.51.100.9", "Authorization", "Bearer "+testAdminToken); r.status != http.StatusOK {
		t.Fatalf("another address: %d", r.status)
	}
}

// TestNoSecretInLogs: with the log at debug level, a gift that needs 3-D
// Secure (its client secret crosses the provider adapter) and a
// configured webhook secret leave no secret in the log.
func TestNoSecretInLogs(t *testing.T) {
	var logs syncBuffer
	cfg := loopbackDefaults(t)
	cfg.Demo, cfg.AdminToken = true, testAdminToken
	cfg.AddressLimit, cfg.EmailLimit = 0, 0
	cfg.StripeWebhookSecret = "whsec_neverlogged0123456789"
	m := &Main{Config: cfg, Logger: newLogger(&logs, "debug", "text")}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := newClient(t, m)
	id, tok := c.donate(gift(2500, "pm_card_authenticationRequired"))
	c.waitStatus(id, "requires_action", 30*time.Second)
	v := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer "+tok).json(t)
	secret, _ := v["client_secret"].(string)
	if !strings.Contains(secret, "_secret_") {
		t.Fatalf("the donor's view has no client secret: %v", v)
	}
	_ = m.Close()
	text := logs.String()
	if !strings.Contains(text, "stripe-go") {
		t.Fatalf("the debug log has none of stripe-go's lines; the test proves nothing:\n%s", text)
	}
	for _, leak := range []string{secret, secret[strings.Index(secret, "_secret_"):], "whsec_neverlogged", "sk_test_floodgate_sandbox"} {
		if strings.Contains(text, leak) {
			t.Errorf("the log holds %q", leak)
		}
	}
}

func TestRedactSecrets(t *testing.T) {
	for in, want := range map[string]string{
		`{"client_secret": "pi_3Nabc_secret_XyZ09"}`: `{"client_secret": "pi_3Nabc_secret_[redacted]"}`,
		"key sk_live_51Habc and rk_test_9x":          "key sk_live_[redacted] and rk_test_[redacted]",
		"whsec_abc+/= rotated":                       "whsec_[redacted] rotated",
		"nothing here pi_123 seti_4":                 "nothing here pi_123 seti_4",
	} {
		if got := redactSecrets(in); got != want {
			t.Errorf("redactSecrets(%q) = %q, want %q", in, got, want)
		}
	}
	var b bytes.Buffer
	l := slog.New(redactHandler{slog.NewJSONHandler(&b, nil)}).With("base", "sk_test_abc")
	l.Info("pi_1_secret_2", "err", &os.PathError{Op: "open", Path: "whsec_zzz", Err: os.ErrNotExist},
		slog.Group("g", "k", "seti_9_secret_8"))
	if s := b.String(); strings.Contains(s, "abc") || strings.Contains(s, "zzz") || strings.Contains(s, "_secret_2") || strings.Contains(s, "_secret_8") {
		t.Fatalf("a secret passed the handler: %s", s)
	}
}

// TestConfigChecksStoreLikeServe: `floodgate config` refuses a store path
// `serve` could not open, accepts the default relative data directory,
// and creates nothing either way.
func TestConfigChecksStoreLikeServe(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), append([]string{"config"}, args...), Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		return code, errOut.String()
	}
	if code, e := run(); code != ExitOK {
		t.Fatalf("config with the defaults (./floodgate-data): exit %d, %s", code, e)
	}
	if code, e := run("--data-dir", "./odd dir?#%"); code != ExitOK {
		t.Fatalf("config with an odd relative data dir: exit %d, %s", code, e)
	}
	if code, e := run("--store", "sqlite://"+file+"/x.db"); code != ExitConfig || !strings.Contains(e, "FLOODGATE_STORE_URL") {
		t.Fatalf("a store under a file: exit %d, %q", code, e)
	}
	if code, e := run("--store", "sqlite://"+dir); code != ExitConfig || !strings.Contains(e, "FLOODGATE_STORE_URL") {
		t.Fatalf("a store that is a directory: exit %d, %q", code, e)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("config created files: %v", entries)
	}
}

// syncBuffer is a bytes.Buffer that a server's goroutines may write to
// while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMetricsOffThePublicPort: /metrics is served on its own listener,
// and the donor-facing port does not answer it.
func TestMetricsOffThePublicPort(t *testing.T) {
	m := startMain(t, nil)
	resp, err := http.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the public port: %d, want 404", resp.StatusCode)
	}
	r := newClient(t, m).do("GET", "/metrics", "")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "floodgate_donations_accepted_total") {
		t.Fatalf("/metrics on %s: %d", m.MetricsURL(), r.status)
	}
	if !strings.HasPrefix(m.MetricsURL(), "http://127.0.0.1:") {
		t.Fatalf("metrics URL %q is not on loopback", m.MetricsURL())
	}
	if config.Defaults().MetricsAddr != "127.0.0.1:9464" {
		t.Fatalf("the default metrics address is %q, want loopback", config.Defaults().MetricsAddr)
	}
}
