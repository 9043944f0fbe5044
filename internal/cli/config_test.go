package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCommand: `floodgate config` prints the effective settings with
// secrets masked, and refuses each dangerous or contradictory setting with
// exit code 2 and one line naming it.
func TestConfigCommand(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		code  int
		names string // the setting the refusal must name
	}{
		{"defaults are fine", nil, nil, ExitOK, ""},
		{"zero bound", []string{"--batch-max", "0"}, nil, ExitConfig, "FLOODGATE_BATCH_MAX"},
		{"negative bound", []string{"--dispatch-workers=-1"}, nil, ExitConfig, "FLOODGATE_DISPATCH_WORKERS"},
		{"zero rate", nil, map[string]string{"FLOODGATE_PROVIDER_RATE": "0"}, ExitConfig, "FLOODGATE_PROVIDER_RATE"},
		{"batch larger than its queue", []string{"--batch-max", "2048", "--ingest-queue", "1024"}, nil, ExitConfig, "FLOODGATE_BATCH_MAX"},
		{"claim larger than the dispatch queue", []string{"--dispatch-claim", "512", "--dispatch-queue", "256"}, nil, ExitConfig, "FLOODGATE_DISPATCH_CLAIM"},
		{"provider rate above the global rate", []string{"--provider-rate", "30", "--provider-global-rate", "25", "--sandbox-rate-limit", "40"}, nil, ExitConfig, "FLOODGATE_PROVIDER_RATE"},
		{"provider rate above the sandbox's limit", []string{"--provider-rate", "30", "--provider-global-rate", "30"}, nil, ExitConfig, "FLOODGATE_SANDBOX_RATE_LIMIT"},
		{"data dir not writable", []string{"--data-dir", filepath.Join(notDir, "sub")}, nil, ExitConfig, "FLOODGATE_DATA_DIR"},
		{"data dir is a file", []string{"--data-dir", notDir}, nil, ExitConfig, "FLOODGATE_DATA_DIR"},
		{"stripe without a key", []string{"--payments", "stripe"}, nil, ExitConfig, "STRIPE_SECRET_KEY"},
		{"unknown store", []string{"--store", "mysql://x"}, nil, ExitConfig, "FLOODGATE_STORE_URL"},
		{"connections per client not below all connections", []string{"--max-conns-per-client", "20000"}, nil, ExitConfig, "FLOODGATE_MAX_CONNS_PER_CLIENT"},
		{"connections per client negative", nil, map[string]string{"FLOODGATE_MAX_CONNS_PER_CLIENT": "-5"}, ExitConfig, "FLOODGATE_MAX_CONNS_PER_CLIENT"},
		{"connections per client off", []string{"--max-conns-per-client", "0"}, nil, ExitOK, ""},
		{"unparsable value", nil, map[string]string{"FLOODGATE_LEASE": "soon"}, ExitConfig, "FLOODGATE_LEASE"},
		{"PROXY protocol with no trusted proxy", []string{"--proxy-protocol"}, nil, ExitConfig, "FLOODGATE_PROXY_PROTOCOL"},
		{"PROXY protocol from a trusted proxy", []string{"--proxy-protocol", "--trusted-proxies", "10.0.0.0/8"}, nil, ExitOK, ""},
		{"decline limit zero", nil, map[string]string{"FLOODGATE_ADDRESS_DECLINE_LIMIT": "0"}, ExitConfig, "FLOODGATE_ADDRESS_DECLINE_LIMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"FLOODGATE_DATA_DIR": t.TempDir(), "STRIPE_WEBHOOK_SECRET": "whsec_topsecret"}
			for k, v := range tt.env {
				env[k] = v
			}
			var out, errOut bytes.Buffer
			code := Run(context.Background(), append([]string{"config"}, tt.args...), Env{Stdout: &out, Stderr: &errOut,
				Getenv: func(k string) string { return env[k] }})
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), "topsecret") {
				t.Fatal("a secret was printed")
			}
			if tt.code == ExitOK {
				if !strings.Contains(out.String(), "FLOODGATE_ADDR=") || !strings.Contains(out.String(), "STRIPE_WEBHOOK_SECRET=********") {
					t.Fatalf("dump:\n%s", out.String())
				}
				return
			}
			line := strings.TrimSpace(errOut.String())
			if strings.Count(line, "\n") != 0 || !strings.Contains(line, tt.names) {
				t.Fatalf("refusal %q: want one line naming %s", line, tt.names)
			}
		})
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"serve", "--batch-max", "0", "--data-dir", t.TempDir()},
		Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
	if code != ExitConfig || !strings.Contains(errOut.String(), "FLOODGATE_BATCH_MAX") {
		t.Fatalf("serve with a bad setting: exit %d, %q", code, errOut.String())
	}
}
