package cli

import (
	"strings"
	"testing"
	"time"
)

// TestExportWhileServing: an accountant exports from the SQLite store
// while floodgate serves from it (the process lock is the writer's only).
func TestExportWhileServing(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	for range 2 {
		id, _ := c.donate(gift(15_000, "pm_card_visa"))
		c.waitStatus(id, "succeeded", 30*time.Second)
	}
	e := &exportEnv{vars: map[string]string{"FLOODGATE_DATA_DIR": m.Config.DataDir}}
	year := time.Now().UTC().Format("2006")
	if code := e.export("ie-relief", "--year", year); code != ExitOK {
		t.Fatalf("export while serving: exit %d: %s", code, e.stderr.String())
	}
	out := e.stdout.String()
	if !strings.Contains(out, "aoife@example.ie") || !strings.Contains(out, "300.00") {
		t.Fatalf("export while serving:\n%s", out)
	}
	// And the server still takes donations.
	c.donate(gift(1000, "pm_card_visa"))
}
