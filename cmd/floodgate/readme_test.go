package main

import (
	"net"
	"net/http"
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

// TestReadmeWalkthrough runs the README's first command exactly as
// written, from the root of a fresh copy of the repository, with no
// floodgate setting in the environment (the data directory is the
// default, relative ./floodgate-data), as a newcomer would; then its curl
// walk-through, exactly as written: a gift goes accepted -> succeeded and
// the totals show it. Then the admin token's story: printed once, kept
// only as a hash, and `floodgate admin-token reset` makes a new one that
// the next start accepts.
func TestReadmeWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "od", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walk-through needs %s (installed by .ci/run)", tool)
		}
	}
	text := readme(t)
	cmds := firstCommands(t, text)
	if len(cmds) != 2 || !strings.Contains(cmds[0], "serve --demo") || cmds[1] != "make test" {
		t.Fatalf("README's first block = %q, want the demo command and the test command", cmds)
	}
	root := freshCopy(t)
	env := newcomerEnv()
	base := "http://localhost:8080"
	if l, err := net.Listen("tcp", ":8080"); err == nil {
		_ = l.Close()
	} else {
		// Another program has the README's port: the command stays as
		// written, and only the address moves.
		addr := freePort(t)
		env = append(env, "FLOODGATE_ADDR="+addr)
		base = "http://" + addr
		t.Logf("port 8080 is taken (%v): the server listens on %s instead", err, addr)
	}
	if l, err := net.Listen("tcp", "127.0.0.1:9464"); err == nil {
		_ = l.Close()
	} else {
		env = append(env, "FLOODGATE_METRICS_ADDR=127.0.0.1:0")
		t.Logf("the default metrics port 9464 is taken (%v): metrics go to a free port", err)
	}
	server := startEnv(t, root, env, "sh", "-c", cmds[0])
	server.await(regexp.MustCompile(`floodgate serving`), 3*time.Minute)
	token := server.await(regexp.MustCompile(`(fga_[a-z0-9]+)`), time.Minute)

	b := strings.Index(text, "<!-- walkthrough:begin -->")
	e := strings.Index(text, "<!-- walkthrough:end -->")
	if b < 0 || e < b {
		t.Fatal("README has no walk-through markers")
	}
	block := text[b:e]
	block = block[strings.Index(block, "```sh\n")+6 : strings.LastIndex(block, "```")]
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "BASE="+base)
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

	// The store is where the defaults say, readable by its owner alone.
	for _, f := range []string{"floodgate.db", "admin-token.sha256"} {
		fi, err := os.Stat(filepath.Join(root, "floodgate-data", f))
		if err != nil {
			t.Fatalf("the default data dir lacks %s: %v", f, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("floodgate-data/%s has mode %o, want 600", f, fi.Mode().Perm())
		}
	}
	if !adminOK(t, base, token) {
		t.Fatal("the printed admin token is refused")
	}
	server.interrupt()

	// A lost token: the reset prints a new one, the next start prints none
	// and takes the new one.
	reset := exec.Command("go", "run", "./cmd/floodgate", "admin-token", "reset")
	reset.Dir, reset.Env = root, env
	rout, err := reset.CombinedOutput()
	if err != nil {
		t.Fatalf("admin-token reset: %v\n%s", err, rout)
	}
	newToken := regexp.MustCompile(`fga_[a-z0-9]+`).FindString(string(rout))
	if newToken == "" || newToken == token {
		t.Fatalf("admin-token reset printed %q", rout)
	}
	again := startEnv(t, root, env, "sh", "-c", cmds[0])
	again.await(regexp.MustCompile(`floodgate serving`), 3*time.Minute)
	if strings.Contains(again.output(), "fga_") {
		t.Fatalf("a second start printed a token:\n%s", again.output())
	}
	if !strings.Contains(again.output(), "admin-token reset") {
		t.Errorf("a second start does not say how to get a new admin token:\n%s", again.output())
	}
	if !adminOK(t, base, newToken) || adminOK(t, base, token) {
		t.Fatal("after a reset the new token must work and the old one must not")
	}
}

// adminOK reports whether token opens an admin endpoint.
func adminOK(tb testing.TB, base, token string) bool {
	tb.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/admin/charging", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// newcomerEnv is this process's environment without any of floodgate's
// settings: a newcomer has set none.
func newcomerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOODGATE_") && !strings.HasPrefix(kv, "STRIPE_") {
			env = append(env, kv)
		}
	}
	return env
}

// freshCopy copies the repository as a fresh clone holds it (every file
// git tracks, and new files it does not ignore, as they are now) into a
// new directory, and returns that directory.
func freshCopy(tb testing.TB) string {
	tb.Helper()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		tb.Fatalf("git ls-files: %v", err)
	}
	dst := filepath.Join(tb.TempDir(), "floodgate")
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or not a file
		}
		b, err := os.ReadFile(src)
		if err != nil {
			tb.Fatal(err)
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(to, b, fi.Mode().Perm()); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "floodgate-data")); err == nil {
		tb.Fatal("the fresh copy holds a floodgate-data directory: is it tracked?")
	}
	return dst
}
