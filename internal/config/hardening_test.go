package config

import (
	"strings"
	"testing"
)

// TestDumpMasksURLCredentials: a credential inside any URL setting (the
// provider's API base, the public URL, the store) never reaches the dump.
func TestDumpMasksURLCredentials(t *testing.T) {
	t.Parallel()
	c := load(t, "", map[string]string{
		"FLOODGATE_STRIPE_API_BASE": "https://sk_live_APIKEYINUSER@stripe-proxy.example:8443/base?token=QUERYTOKEN",
		"FLOODGATE_PUBLIC_URL":      "https://ops:PUBLICPASS@give.example.org/",
		"FLOODGATE_STORE_URL":       "postgres://fg@db:5432/fg?sslpassword=SSLKEYPASS",
	})
	out := dump(t, c)
	for _, secret := range []string{"APIKEYINUSER", "QUERYTOKEN", "PUBLICPASS", "SSLKEYPASS"} {
		if strings.Contains(out, secret) {
			t.Errorf("dump shows %q:\n%s", secret, out)
		}
	}
	for _, line := range []string{
		"FLOODGATE_STRIPE_API_BASE=https://********@stripe-proxy.example:8443/base?token=********  # env\n",
		"FLOODGATE_PUBLIC_URL=https://ops:********@give.example.org/  # env\n",
		"FLOODGATE_STORE_URL=postgres://fg@db:5432/fg?sslpassword=********  # env\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("dump lacks %q:\n%s", line, out)
		}
	}
}

// TestAdminTokenLength refuses a configured admin token shorter than 32
// characters, without showing it.
func TestAdminTokenLength(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"", true}, // generated at first start
		{"a", false},
		{strings.Repeat("x", 31), false},
		{strings.Repeat("x", 32), true},
		{strings.Repeat("é", 32), true},
	} {
		c := load(t, "", map[string]string{"FLOODGATE_ADMIN_TOKEN": tc.token, "FLOODGATE_DATA_DIR": t.TempDir()})
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Fatalf("admin token of %d characters: %v", len([]rune(tc.token)), err)
		}
		if err != nil && (!strings.Contains(err.Error(), "FLOODGATE_ADMIN_TOKEN") || !strings.Contains(err.Error(), "at least 32") || (tc.token != "" && strings.Contains(err.Error(), tc.token+`"`))) {
			t.Fatalf("refusal %q: want it to name the setting and the rule, and not show the token", err)
		}
	}
}

// TestWarnsOfSecretsOnTheCommandLine: a secret given as a flag's value is
// a warning; from the environment or a file it is not.
func TestWarnsOfSecretsOnTheCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", strings.Repeat("t", 40)+"\n")
	c, _, err := Load([]string{"--admin-token", strings.Repeat("a", 40), "--stripe-webhook-secret", "whsec_x", "--stripe-key-file", tokenFile},
		func(k string) string {
			if k == "STRIPE_SECRET_KEY" {
				return "sk_test_fromenv"
			}
			return ""
		})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"FLOODGATE_ADMIN_TOKEN was given on the command line (--admin-token)", "STRIPE_WEBHOOK_SECRET was given on the command line"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "STRIPE_SECRET_KEY") || strings.Contains(w, strings.Repeat("a", 40)) {
		t.Errorf("warnings name a secret from a file, or show a secret:\n%s", w)
	}
}
