package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over a map, so tests never see the real
// environment.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes content to name in dir and returns its path.
func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// load runs Load with a config file holding file (when not empty), the
// environment m and the flags args, and fails the test on error.
func load(tb testing.TB, file string, m map[string]string, args ...string) *Config {
	tb.Helper()
	c, _, err := loadErr(tb, file, m, args...)
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	return c
}

func loadErr(tb testing.TB, file string, m map[string]string, args ...string) (*Config, string, error) {
	tb.Helper()
	e := map[string]string{}
	for k, v := range m {
		e[k] = v
	}
	var path string
	if file != "" {
		path = writeFile(tb, tb.TempDir(), "floodgate.conf", file)
		e["FLOODGATE_CONFIG"] = path
	}
	c, _, err := Load(args, env(e))
	return c, path, err
}

// TestContractDefaults pins the defaults the public contract promises.
func TestContractDefaults(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"FLOODGATE_ADDR":                 ":8080",
		"FLOODGATE_DATA_DIR":             "./floodgate-data",
		"FLOODGATE_STORE_URL":            "sqlite",
		"FLOODGATE_PAYMENTS":             "sandbox",
		"FLOODGATE_ADMIN_TOKEN":          "",
		"FLOODGATE_PROVIDER_RATE":        "20",
		"FLOODGATE_PROVIDER_GLOBAL_RATE": "20",
		"FLOODGATE_ACTION_TIMEOUT":       "15m",
		"STRIPE_SECRET_KEY":              "",
		"STRIPE_WEBHOOK_SECRET":          "",
		"FLOODGATE_STRIPE_API_BASE":      "",
		"FLOODGATE_SANDBOX_RATE_LIMIT":   "25",
	}
	flags := map[string]string{
		"FLOODGATE_ADDR": "addr", "FLOODGATE_DATA_DIR": "data-dir", "FLOODGATE_STORE_URL": "store",
		"FLOODGATE_PAYMENTS": "payments", "FLOODGATE_ADMIN_TOKEN": "admin-token",
		"FLOODGATE_PROVIDER_RATE": "provider-rate", "FLOODGATE_PROVIDER_GLOBAL_RATE": "provider-global-rate",
		"FLOODGATE_ACTION_TIMEOUT": "action-timeout", "STRIPE_SECRET_KEY": "stripe-key",
		"STRIPE_WEBHOOK_SECRET": "stripe-webhook-secret", "FLOODGATE_STRIPE_API_BASE": "stripe-api-base",
		"FLOODGATE_SANDBOX_RATE_LIMIT": "sandbox-rate-limit",
	}
	c := load(t, "", nil)
	for name, v := range want {
		o := lookup(name)
		if o == nil {
			t.Errorf("%s: not a setting", name)
			continue
		}
		if got := o.value(c); got != v {
			t.Errorf("%s = %q, want %q", name, got, v)
		}
		if o.flag != flags[name] {
			t.Errorf("%s: flag --%s, want --%s", name, o.flag, flags[name])
		}
		if s := c.Source(name); s != SourceDefault {
			t.Errorf("%s: source %q, want default", name, s)
		}
	}
}

// TestTable checks the settings table itself: unique names, a help line
// for each, and the secrets the brief names.
func TestTable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	var secrets []string
	for _, o := range options {
		for _, n := range []string{o.env, o.flag} {
			if seen[n] {
				t.Errorf("%s used twice", n)
			}
			seen[n] = true
		}
		if o.help == "" || !strings.HasSuffix(o.help, ".") {
			t.Errorf("%s: help %q is not a sentence", o.env, o.help)
		}
		if !strings.HasPrefix(o.env, "FLOODGATE_") && !strings.HasPrefix(o.env, "STRIPE_") {
			t.Errorf("%s: not a floodgate or Stripe name", o.env)
		}
		if o.secret {
			secrets = append(secrets, o.env)
		}
	}
	slices.Sort(secrets)
	if want := []string{"FLOODGATE_ADMIN_TOKEN", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"}; !slices.Equal(secrets, want) {
		t.Errorf("secrets = %v, want %v", secrets, want)
	}
	if len(Settings()) != len(options) {
		t.Errorf("Settings() has %d entries, want %d", len(Settings()), len(options))
	}
}

// TestPrecedence checks default < file < env < flag, for each kind of
// value.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		setting    string
		file       string
		env        map[string]string
		args       []string
		want       string
		wantSource Source
	}{
		{"default", "FLOODGATE_BATCH_MAX", "", nil, nil, "512", SourceDefault},
		{"file over default", "FLOODGATE_BATCH_MAX", "FLOODGATE_BATCH_MAX=100\n", nil, nil, "100", SourceFile},
		{"env over file", "FLOODGATE_BATCH_MAX", "FLOODGATE_BATCH_MAX=100\n",
			map[string]string{"FLOODGATE_BATCH_MAX": "200"}, nil, "200", SourceEnv},
		{"flag over env", "FLOODGATE_BATCH_MAX", "FLOODGATE_BATCH_MAX=100\n",
			map[string]string{"FLOODGATE_BATCH_MAX": "200"}, []string{"--batch-max", "300"}, "300", SourceFlag},
		{"flag over file", "FLOODGATE_BATCH_MAX", "FLOODGATE_BATCH_MAX=100\n", nil, []string{"-batch-max=300"}, "300", SourceFlag},
		{"empty env is unset", "FLOODGATE_BATCH_MAX", "FLOODGATE_BATCH_MAX=100\n",
			map[string]string{"FLOODGATE_BATCH_MAX": ""}, nil, "100", SourceFile},
		{"other flag leaves it", "FLOODGATE_BATCH_MAX", "", map[string]string{"FLOODGATE_BATCH_MAX": "200"},
			[]string{"--batch-wait", "2ms"}, "200", SourceEnv},
		{"string from file", "FLOODGATE_ADDR", "FLOODGATE_ADDR=\"127.0.0.1:9000\"\n", nil, nil, "127.0.0.1:9000", SourceFile},
		{"string from flag", "FLOODGATE_ADDR", "FLOODGATE_ADDR=:1\n", map[string]string{"FLOODGATE_ADDR": ":2"},
			[]string{"--addr=:3"}, ":3", SourceFlag},
		{"float from env", "FLOODGATE_PROVIDER_RATE", "", map[string]string{"FLOODGATE_PROVIDER_RATE": "12.5"}, nil, "12.5", SourceEnv},
		{"duration from file", "FLOODGATE_LEASE", "FLOODGATE_LEASE=5m\n", nil, nil, "5m", SourceFile},
		{"bare bool flag", "FLOODGATE_DEMO", "", nil, []string{"--demo"}, "true", SourceFlag},
		{"bool flag false over env", "FLOODGATE_DEMO", "", map[string]string{"FLOODGATE_DEMO": "true"},
			[]string{"--demo=false"}, "false", SourceFlag},
		{"explicit global rate kept with live key", "FLOODGATE_PROVIDER_GLOBAL_RATE", "FLOODGATE_PROVIDER_GLOBAL_RATE=50\n",
			map[string]string{"STRIPE_SECRET_KEY": "sk_live_x"}, nil, "50", SourceFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := load(t, tt.file, tt.env, tt.args...)
			o := lookup(tt.setting)
			if got := o.value(c); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.setting, got, tt.want)
			}
			if got := c.Source(tt.setting); got != tt.wantSource {
				t.Errorf("Source(%s) = %q, want %q", tt.setting, got, tt.wantSource)
			}
			if got := c.Source(o.flag); got != tt.wantSource {
				t.Errorf("Source(%s) by flag = %q, want %q", o.flag, got, tt.wantSource)
			}
		})
	}
}

// TestConfigFileChoice checks that --config names the file over
// FLOODGATE_CONFIG, and that a named file must exist.
func TestConfigFileChoice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := writeFile(t, dir, "a.conf", "FLOODGATE_ADDR=:1111\n")
	b := writeFile(t, dir, "b.conf", "FLOODGATE_ADDR=:2222\n")

	c, _, err := Load([]string{"--config", b}, env(map[string]string{"FLOODGATE_CONFIG": a}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":2222" || c.ConfigFile != b || c.Source("FLOODGATE_CONFIG") != SourceFlag {
		t.Errorf("Addr %q ConfigFile %q source %q; want :2222 from %s by flag", c.Addr, c.ConfigFile, c.Source("config"), b)
	}
	if got := c.origin(lookup("addr")).String(); got != "file "+b+":1" {
		t.Errorf("origin = %q", got)
	}

	_, _, err = Load(nil, env(map[string]string{"FLOODGATE_CONFIG": filepath.Join(dir, "missing.conf")}))
	if err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing file: err = %v, want one naming the file", err)
	}
}

// TestSecretFiles checks NAME_FILE and --flag-file for every secret.
func TestSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := writeFile(t, dir, "key", "sk_test_fromfile\n")
	crlf := writeFile(t, dir, "crlf", "whsec_a,whsec_b\r\n")
	token := writeFile(t, dir, "token", "tok-from-file")
	empty := writeFile(t, dir, "empty", "\n")
	writeFile(t, dir, "rel", "sk_test_relative\n")

	tests := []struct {
		name    string
		file    string
		env     map[string]string
		args    []string
		setting string
		want    string
		source  string // the full origin
		wantErr string // the whole error line; "" for success
	}{
		{name: "env file", env: map[string]string{"STRIPE_SECRET_KEY_FILE": key},
			setting: "STRIPE_SECRET_KEY", want: "sk_test_fromfile", source: "env STRIPE_SECRET_KEY_FILE"},
		{name: "crlf trimmed", env: map[string]string{"STRIPE_WEBHOOK_SECRET_FILE": crlf},
			setting: "STRIPE_WEBHOOK_SECRET", want: "whsec_a,whsec_b", source: "env STRIPE_WEBHOOK_SECRET_FILE"},
		{name: "no newline", env: map[string]string{"FLOODGATE_ADMIN_TOKEN_FILE": token},
			setting: "FLOODGATE_ADMIN_TOKEN", want: "tok-from-file", source: "env FLOODGATE_ADMIN_TOKEN_FILE"},
		{name: "flag file", args: []string{"--admin-token-file", token},
			setting: "FLOODGATE_ADMIN_TOKEN", want: "tok-from-file", source: "flag --admin-token-file"},
		{name: "config file names a secret file", file: "STRIPE_SECRET_KEY_FILE=" + key + "\n",
			setting: "STRIPE_SECRET_KEY", want: "sk_test_fromfile", source: "file"},
		{name: "flag value over env file", env: map[string]string{"STRIPE_SECRET_KEY_FILE": key},
			args: []string{"--stripe-key", "sk_test_flag"}, setting: "STRIPE_SECRET_KEY", want: "sk_test_flag", source: "flag --stripe-key"},
		{name: "env value over file's secret file", file: "STRIPE_SECRET_KEY_FILE=" + key + "\n",
			env: map[string]string{"STRIPE_SECRET_KEY": "sk_test_env"}, setting: "STRIPE_SECRET_KEY", want: "sk_test_env", source: "env"},
		{name: "env both", env: map[string]string{"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_SECRET_KEY_FILE": key},
			wantErr: "STRIPE_SECRET_KEY (--stripe-key) from env: both STRIPE_SECRET_KEY and STRIPE_SECRET_KEY_FILE are set; set one"},
		{name: "flag both", args: []string{"--stripe-key", "sk_test_x", "--stripe-key-file", key},
			wantErr: "STRIPE_SECRET_KEY (--stripe-key) from flag: both --stripe-key and --stripe-key-file are given; give one"},
		{name: "missing file", env: map[string]string{"FLOODGATE_ADMIN_TOKEN_FILE": filepath.Join(dir, "nope")},
			wantErr: "FLOODGATE_ADMIN_TOKEN (--admin-token) from env FLOODGATE_ADMIN_TOKEN_FILE: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "empty file", env: map[string]string{"STRIPE_SECRET_KEY_FILE": empty},
			wantErr: "STRIPE_SECRET_KEY (--stripe-key) from env STRIPE_SECRET_KEY_FILE: " + empty + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _, err := loadErr(t, tt.file, tt.env, tt.args...)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v\nwant %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := lookup(tt.setting)
			if got := o.value(c); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.setting, got, tt.want)
			}
			if got := c.origin(o).String(); !strings.HasPrefix(got, tt.source) {
				t.Errorf("origin = %q, want %q", got, tt.source)
			}
		})
	}

	// A relative NAME_FILE in a config file is relative to that file.
	conf := writeFile(t, dir, "rel.conf", "STRIPE_SECRET_KEY_FILE=rel\n")
	c, _, err := Load([]string{"--config", conf}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.StripeKey != "sk_test_relative" {
		t.Errorf("relative secret file: key = %q", c.StripeKey)
	}
}

// TestBadValues checks that a value that does not parse names the setting
// and its source, whatever the source and the kind.
func TestBadValues(t *testing.T) {
	t.Parallel()
	const durProblem = "not a duration (give a unit, e.g. 250ms, 15s, 2m, 24h)"
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string // the error line; FILE stands for the config file's path
	}{
		{"int from env", "", map[string]string{"FLOODGATE_BATCH_MAX": "many"}, nil,
			`FLOODGATE_BATCH_MAX (--batch-max) = "many" from env: not a whole number`},
		{"int out of range", "", map[string]string{"FLOODGATE_INGEST_QUEUE": "99999999999999999999"}, nil,
			`FLOODGATE_INGEST_QUEUE (--ingest-queue) = "99999999999999999999" from env: out of range`},
		{"int not octal", "", map[string]string{"FLOODGATE_READ_CONNS": "0x10"}, nil,
			`FLOODGATE_READ_CONNS (--read-conns) = "0x10" from env: not a whole number`},
		{"duration without unit from file", "# a comment\nFLOODGATE_LEASE=5\n", nil, nil,
			`FLOODGATE_LEASE (--lease) = "5" from file FILE:2: ` + durProblem},
		{"float from flag", "", nil, []string{"--provider-rate", "fast"},
			`FLOODGATE_PROVIDER_RATE (--provider-rate) = "fast" from flag --provider-rate: not a finite number`},
		{"NaN", "", map[string]string{"FLOODGATE_SANDBOX_FAIL_RATE": "NaN"}, nil,
			`FLOODGATE_SANDBOX_FAIL_RATE (--sandbox-fail-rate) = "NaN" from env: not a finite number`},
		{"infinity", "", nil, []string{"--sandbox-rate-limit=+Inf"},
			`FLOODGATE_SANDBOX_RATE_LIMIT (--sandbox-rate-limit) = "+Inf" from flag --sandbox-rate-limit: not a finite number`},
		{"bool from env", "", map[string]string{"FLOODGATE_DEMO": "yes please"}, nil,
			`FLOODGATE_DEMO (--demo) = "yes please" from env: not a boolean (true or false)`},
		{"bool from flag", "", nil, []string{"--demo=maybe"},
			`FLOODGATE_DEMO (--demo) = "maybe" from flag --demo: not a boolean (true or false)`},
		{"newline stays quoted", "", map[string]string{"FLOODGATE_BATCH_WAIT": "1ms\n2ms"}, nil,
			`FLOODGATE_BATCH_WAIT (--batch-wait) = "1ms\n2ms" from env: ` + durProblem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, path, err := loadErr(t, tt.file, tt.env, tt.args...)
			want := strings.ReplaceAll(tt.want, "FILE", path)
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("err is %T, want *Error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line")
			}
		})
	}
}

// TestFlags checks what is not a setting: help, unknown flags and the
// positional arguments.
func TestFlags(t *testing.T) {
	t.Parallel()
	if _, _, err := Load([]string{"--help"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: err = %v, want flag.ErrHelp", err)
	}
	if _, _, err := Load([]string{"--no-such-flag"}, env(nil)); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag: err = %v", err)
	}
	c, args, err := Load([]string{"--addr", ":1", "--demo", "extra", "--batch-max", "3"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"extra", "--batch-max", "3"}; !slices.Equal(args, want) {
		t.Errorf("args = %q, want %q", args, want)
	}
	if c.Addr != ":1" || !c.Demo || c.BatchMax != 512 {
		t.Errorf("Addr %q Demo %v BatchMax %d", c.Addr, c.Demo, c.BatchMax)
	}
}

// TestGlobalRateDefault checks that the global rate follows the key only
// when no layer set it.
func TestGlobalRateDefault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		want   float64
		source string
	}{
		{"no key", nil, nil, 20, "default"},
		{"test key", map[string]string{"STRIPE_SECRET_KEY": "sk_test_1"}, nil, 20, "default (test key)"},
		{"live key", map[string]string{"STRIPE_SECRET_KEY": "sk_live_1"}, nil, 80, "default (live key)"},
		{"restricted live key", map[string]string{"STRIPE_SECRET_KEY": "rk_live_1"}, nil, 80, "default (live key)"},
		{"live key by flag", nil, []string{"--stripe-key=sk_live_1"}, 80, "default (live key)"},
		{"given", map[string]string{"STRIPE_SECRET_KEY": "sk_live_1", "FLOODGATE_PROVIDER_GLOBAL_RATE": "90"}, nil, 90, "env"},
		{"given equal to the default", map[string]string{"STRIPE_SECRET_KEY": "sk_live_1"},
			[]string{"--provider-global-rate", "20"}, 20, "flag --provider-global-rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := load(t, "", tt.env, tt.args...)
			if c.ProviderGlobalRate != tt.want {
				t.Errorf("ProviderGlobalRate = %v, want %v", c.ProviderGlobalRate, tt.want)
			}
			if got := c.origin(lookup("provider-global-rate")).String(); got != tt.source {
				t.Errorf("origin = %q, want %q", got, tt.source)
			}
		})
	}
}

// TestHelpers checks the small derived answers the rest of floodgate asks.
func TestHelpers(t *testing.T) {
	t.Parallel()
	t.Run("StripeKeyMode", func(t *testing.T) {
		t.Parallel()
		for key, want := range map[string]string{
			"": "", "sk_live_a": "live", "rk_live_a": "live", "sk_test_a": "test", "rk_test_a": "test",
			"pk_live_a": "", "sk_a": "", "whsec_a": "",
		} {
			if got := (&Config{StripeKey: key}).StripeKeyMode(); got != want {
				t.Errorf("StripeKeyMode(%q) = %q, want %q", key, got, want)
			}
		}
	})
	t.Run("SandboxInProcess", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			payments, base string
			want           bool
		}{
			{"sandbox", "", true},
			{"sandbox", "http://127.0.0.1:12111", false},
			{"stripe", "", false},
		} {
			c := &Config{Payments: tt.payments, StripeAPIBase: tt.base}
			if got := c.SandboxInProcess(); got != tt.want {
				t.Errorf("%+v: SandboxInProcess = %v", tt, got)
			}
		}
	})
	t.Run("WebhookSecrets", func(t *testing.T) {
		t.Parallel()
		for in, want := range map[string][]string{
			"":                     nil,
			"  ":                   nil,
			"whsec_a":              {"whsec_a"},
			"whsec_a, whsec_b":     {"whsec_a", "whsec_b"},
			"whsec_a,,other":       {"whsec_a", "", "other"},
			" whsec_a , whsec_b  ": {"whsec_a", "whsec_b"},
		} {
			if got := (&Config{StripeWebhookSecret: in}).WebhookSecrets(); !slices.Equal(got, want) {
				t.Errorf("WebhookSecrets(%q) = %q, want %q", in, got, want)
			}
		}
	})
	t.Run("Store", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			url, engine, path string
		}{
			{"sqlite", "sqlite", filepath.Join("/data", "floodgate.db")},
			{"sqlite:night.db", "sqlite", filepath.Join("/data", "night.db")},
			{"sqlite:db/night.db", "sqlite", filepath.Join("/data", "db", "night.db")},
			{"sqlite:///var/lib/fg.db", "sqlite", "/var/lib/fg.db"},
			{"sqlite:/var/lib/fg.db", "sqlite", "/var/lib/fg.db"},
			{"postgres://u:p@db:5432/fg", "postgres", ""},
			{"postgresql:///fg?host=/run/postgresql", "postgres", ""},
			{"mysql://db/fg", "", ""},
			{"sqlite://host/fg.db", "", ""},
		} {
			c := &Config{StoreURL: tt.url, DataDir: "/data"}
			if got := c.StoreEngine(); got != tt.engine {
				t.Errorf("StoreEngine(%q) = %q, want %q", tt.url, got, tt.engine)
			}
			if got := c.SQLitePath(); got != tt.path {
				t.Errorf("SQLitePath(%q) = %q, want %q", tt.url, got, tt.path)
			}
		}
	})
}

// TestUsage checks that the help names every flag, its variable and, for
// secrets, the file variants.
func TestUsage(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	Usage(&b)
	out := b.String()
	for _, o := range options {
		if !regexp.MustCompile(`(?m)^  --` + o.flag + `( [a-z]+)?$`).MatchString(out) {
			t.Errorf("usage lacks --%s", o.flag)
		}
		for _, s := range []string{o.env, o.help} {
			if !strings.Contains(out, s) {
				t.Errorf("usage lacks %q", s)
			}
		}
		if o.secret && !strings.Contains(out, o.fileEnv()+" or --"+o.fileFlag()) {
			t.Errorf("usage lacks the file variants of %s", o.env)
		}
	}
	if !strings.Contains(out, `FLOODGATE_BATCH_WAIT; default "1ms"`) {
		t.Errorf("usage lacks defaults:\n%s", out)
	}
}

// TestDefaultsParse guards against a default in the table that its own
// parser refuses, which Defaults turns into a panic.
func TestDefaultsParse(t *testing.T) {
	t.Parallel()
	c := Defaults()
	if c.ActionTimeout != 15*time.Minute || c.BatchWait != time.Millisecond || c.SSEMaxSubscribers != 15000 {
		t.Errorf("defaults: %+v", c)
	}
}
