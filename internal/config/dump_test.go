package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func dump(tb testing.TB, c *Config) string {
	tb.Helper()
	var b strings.Builder
	if err := c.Dump(&b); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// TestDumpMasksSecrets checks that no secret, from any source, reaches the
// dump, and that the masks still tell what is configured.
func TestDumpMasksSecrets(t *testing.T) {
	t.Parallel()
	const (
		key      = "sk_test_SECRETKEYVALUE"
		whsecA   = "whsec_FIRSTSECRET"
		whsecB   = "whsec_SECONDSECRET"
		token    = "ADMINTOKENVALUE"
		password = "PGPASSWORDVALUE"
	)
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", token+"\n")
	c := load(t, "STRIPE_WEBHOOK_SECRET="+whsecA+","+whsecB+"\n",
		map[string]string{
			"STRIPE_SECRET_KEY":          key,
			"FLOODGATE_ADMIN_TOKEN_FILE": tokenFile,
			"FLOODGATE_STORE_URL":        "postgres://floodgate:" + password + "@db:5432/fg?sslmode=require&password=" + password,
		})
	out := dump(t, c)
	for _, secret := range []string{key, whsecA, whsecB, token, password} {
		if strings.Contains(out, secret) {
			t.Errorf("dump shows %q:\n%s", secret, out)
		}
	}
	for _, line := range []string{
		"STRIPE_SECRET_KEY=********  # env\n",
		"STRIPE_WEBHOOK_SECRET=********,********  # file ",
		"FLOODGATE_ADMIN_TOKEN=********  # env FLOODGATE_ADMIN_TOKEN_FILE\n",
		"FLOODGATE_STORE_URL=postgres://floodgate:********@db:5432/fg?sslmode=require&password=********  # env\n",
		"FLOODGATE_PROVIDER_GLOBAL_RATE=20  # default (test key)\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("dump lacks %q:\n%s", line, out)
		}
	}

	// Unset secrets are empty, so "not configured" is visible too.
	out = dump(t, Defaults())
	for _, line := range []string{"STRIPE_SECRET_KEY=  # default\n", "STRIPE_WEBHOOK_SECRET=  # default\n", "FLOODGATE_ADMIN_TOKEN=  # default\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("dump lacks %q:\n%s", line, out)
		}
	}
}

// TestDumpEverySetting checks one line per setting, in the table's order,
// in the form NAME=value  # source.
func TestDumpEverySetting(t *testing.T) {
	t.Parallel()
	c := load(t, "FLOODGATE_BATCH_MAX=100\n", map[string]string{"FLOODGATE_ADDR": ":9"}, "--lease", "3m")
	lines := strings.Split(strings.TrimSuffix(dump(t, c), "\n"), "\n")
	if len(lines) != len(options) {
		t.Fatalf("%d lines, want %d", len(lines), len(options))
	}
	for i, o := range options {
		if !strings.HasPrefix(lines[i], o.env+"=") || !strings.Contains(lines[i], "  # ") {
			t.Errorf("line %d = %q, want %s=...  # source", i, lines[i], o.env)
		}
	}
	for _, want := range []string{
		"FLOODGATE_ADDR=:9  # env",
		"FLOODGATE_LEASE=3m  # flag --lease",
		"FLOODGATE_BATCH_WAIT=1ms  # default",
	} {
		found := false
		for _, l := range lines {
			found = found || l == want
		}
		if !found {
			t.Errorf("dump lacks the line %q", want)
		}
	}
	if !strings.Contains(strings.Join(lines, "\n"), "FLOODGATE_BATCH_MAX=100  # file "+c.ConfigFile+":1") {
		t.Errorf("dump does not say the file and line of FLOODGATE_BATCH_MAX")
	}
}

// TestDumpReadsBack checks that a dump without secrets is a config file
// that loads to the same configuration, awkward strings included.
func TestDumpReadsBack(t *testing.T) {
	t.Parallel()
	c := Defaults()
	c.Addr = "127.0.0.1:9000"
	c.DataDir = "/var/lib/flood gate #1"
	c.PublicURL = "https://give.example.ie/#top"
	c.StoreURL = `sqlite:'odd" name.db`
	c.Demo = true
	c.ProviderRate = 12.5
	c.SandboxFailRate = 0.05
	c.Lease = 90 * time.Second
	c.BatchMax = 7

	var lines []string
	for _, l := range strings.Split(dump(t, c), "\n") {
		// A config file cannot name itself.
		if !strings.HasPrefix(l, "FLOODGATE_CONFIG=") {
			lines = append(lines, l)
		}
	}
	path := filepath.Join(t.TempDir(), "dump.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, err := Load([]string{"--config", path}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	got.ConfigFile, got.origins, c.origins = "", nil, nil
	if !reflect.DeepEqual(got, c) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, c)
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", time.Millisecond: "1ms", 250 * time.Millisecond: "250ms", 15 * time.Second: "15s",
		2 * time.Minute: "2m", 90 * time.Second: "1m30s", 24 * time.Hour: "24h", time.Hour + time.Second: "1h0m1s",
		-time.Minute: "-1m",
	} {
		got := formatDuration(d)
		if got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("%q reads back as %v, %v", got, back, err)
		}
	}
}
