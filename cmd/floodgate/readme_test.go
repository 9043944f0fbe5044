package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readme returns the repository's README.
func readme(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// firstCommands returns the commands of the README's first code block,
// comments stripped: what a newcomer runs first.
func firstCommands(tb testing.TB, text string) []string {
	tb.Helper()
	start := strings.Index(text, "```sh\n")
	end := strings.Index(text[start+6:], "```")
	if start < 0 || end < 0 {
		tb.Fatal("README has no first sh block")
	}
	var cmds []string
	for _, line := range strings.Split(text[start+6:start+6+end], "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// TestReadmeWalkthrough runs the README's first command (the demo server,
// through `go run`, as a newcomer would) and then its curl walk-through,
// exactly as written: a gift goes accepted -> succeeded and the totals
// show it.
func TestReadmeWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "od"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walk-through needs %s (installed by .ci/run)", tool)
		}
	}
	text := readme(t)
	cmds := firstCommands(t, text)
	if len(cmds) != 2 || !strings.Contains(cmds[0], "serve --demo") || cmds[1] != "make test" {
		t.Fatalf("README's first block = %q, want the demo command and the test command", cmds)
	}
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	addr := freePort(t)
	server := start(t, root, []string{"FLOODGATE_ADDR=" + addr, "FLOODGATE_DATA_DIR=" + t.TempDir()}, "sh", "-c", cmds[0])
	server.await(regexp.MustCompile(`floodgate serving`), 3*time.Minute)

	b := strings.Index(text, "<!-- walkthrough:begin -->")
	e := strings.Index(text, "<!-- walkthrough:end -->")
	if b < 0 || e < b {
		t.Fatal("README has no walk-through markers")
	}
	block := text[b:e]
	block = block[strings.Index(block, "```sh\n")+6 : strings.LastIndex(block, "```")]
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "BASE=http://"+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walk-through failed: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{`"status": "succeeded"`, `"raised": 2500`, `"pledged": 2500`, `"donor_token": "dt_`, `"email": "aoife@example.ie"`} {
		if !strings.Contains(got, want) {
			t.Fatalf("walk-through output lacks %s:\n%s", want, got)
		}
	}
}
