package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/sqlite"
)

// The secrets the rig gives the node and the sandbox: fixed, since both
// live only on loopback for one run.
const (
	adminToken    = "parity-admin-token-0123456789abcdef"
	webhookSecret = "whsec_parity_0123456789abcdef"
	sandboxKey    = "sk_test_parity"
)

// proc is a child process in its own process group, its output in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop interrupts the process group, as Ctrl-C does, and waits for the
// exit; a process that does not exit within the grace is killed.
func (p *proc) stop(grace time.Duration) error {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGINT:\n%s", p.name, grace, p.tail())
	}
}

func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail is the end of the process's output, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// rig is one run's sandbox and node, from one binary.
type rig struct {
	dir                 string
	sandbox, node       *proc
	sandboxURL, nodeURL string
	dataDir             string
	hc                  *http.Client
}

func startRig(ctx context.Context, o options, dir string) (*rig, error) {
	r := &rig{dir: dir, dataDir: filepath.Join(dir, "node"), hc: &http.Client{Timeout: 10 * time.Second}}
	if err := os.MkdirAll(r.dataDir, 0o700); err != nil {
		return nil, err
	}
	sandboxAddr, nodeAddr := freeAddr(), freeAddr()
	r.sandboxURL, r.nodeURL = "http://"+sandboxAddr, "http://"+nodeAddr
	var err error
	// No injected faults and events in order: every gift's outcome is
	// decided by its card and what the workload does, never by chance.
	r.sandbox, err = startProc(dir, "sandbox", o.Bin, "sandbox", "--addr", sandboxAddr, "--log-level", "warn",
		"--webhook-url", r.nodeURL+"/v1/webhooks/stripe", "--webhook-secret", webhookSecret)
	if err != nil {
		return nil, err
	}
	if err := r.waitOK(ctx, r.sandbox, r.sandboxURL+"/_sandbox/ledger?summary=true"); err != nil {
		r.close()
		return nil, err
	}
	r.node, err = startProc(dir, "node", o.Bin, serveArgs(o, r.dataDir, nodeAddr, r.sandboxURL)...)
	if err != nil {
		r.close()
		return nil, err
	}
	if err := r.waitOK(ctx, r.node, r.nodeURL+"/readyz"); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// serveArgs is the node's command line; every flag is one that the
// floodgate of before the reshape knows too.
func serveArgs(o options, dataDir, addr, sandboxURL string) []string {
	rate := fmt.Sprint(o.ProviderRate)
	return []string{"serve", "--addr", addr, "--metrics-addr", freeAddr(), "--data-dir", dataDir, "--log-level", "warn",
		"--admin-token", adminToken, "--payments", "sandbox", "--stripe-api-base", sandboxURL,
		"--stripe-key", sandboxKey, "--stripe-webhook-secret", webhookSecret,
		"--provider-rate", rate, "--provider-global-rate", rate, "--action-timeout", o.ActionTimeout.String(),
		// Every request comes from 127.0.0.1 and the cards repeat: the
		// card-testing defences would refuse gifts by the order in which
		// they happen to be charged.
		"--address-limit", "0", "--email-limit", "0", "--card-block", "0s"}
}

// stopNode stops the node cleanly; the store is then the rig's to read.
func (r *rig) stopNode() error {
	if r.node == nil {
		return nil
	}
	err := r.node.stop(30 * time.Second)
	r.node = nil
	return err
}

// upgrade starts bin's serve on the stopped node's data directory, which
// migrates the store to bin's schema, and stops it once it is ready.
func (r *rig) upgrade(ctx context.Context, o options, bin string) error {
	addr := freeAddr()
	p, err := startProc(r.dir, "upgrade", bin, serveArgs(o, r.dataDir, addr, r.sandboxURL)...)
	if err != nil {
		return err
	}
	if err := r.waitOK(ctx, p, "http://"+addr+"/readyz"); err != nil {
		p.kill()
		return fmt.Errorf("upgrade: %w", err)
	}
	return p.stop(30 * time.Second)
}

// storePath is the node's SQLite file.
func (r *rig) storePath() string { return sqlite.DefaultPath(r.dataDir) }

func (r *rig) close() {
	r.hc.CloseIdleConnections()
	if r.node != nil {
		r.node.kill()
	}
	if r.sandbox != nil {
		r.sandbox.kill()
	}
}

// waitOK polls url until it answers 200, p exits or ctx ends.
func (r *rig) waitOK(ctx context.Context, p *proc, url string) error {
	for {
		if a, err := r.do(ctx, http.MethodGet, url, nil); err == nil && a.status == http.StatusOK {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s answered 200:\n%s", p.name, url, p.tail())
		case <-ctx.Done():
			return fmt.Errorf("%s: %s never answered 200: %w\n%s", p.name, url, ctx.Err(), p.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// answer is an HTTP response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; header holds name, value pairs. A body is JSON
// unless a Content-Type says otherwise.
func (r *rig) do(ctx context.Context, method, url string, body []byte, header ...string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// form sends a form-encoded POST to the sandbox, as Stripe's clients do.
func (r *rig) form(ctx context.Context, url, form string, header ...string) (answer, error) {
	return r.do(ctx, http.MethodPost, url, []byte(form), append([]string{"Content-Type", "application/x-www-form-urlencoded",
		"Accept", "application/json"}, header...)...)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// bodyWord is what an answer's body says in one word: the problem type
// of an error, the error code of a Stripe error, or the status of the
// object returned.
func bodyWord(b []byte) string {
	var v struct {
		Type   string `json:"type"`
		Status any    `json:"status"`
		Error  *struct {
			Code string `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	if jsonUnmarshal(b, &v) != nil {
		return strings.TrimSpace(string(b))
	}
	switch {
	case v.Error != nil:
		return strings.TrimSpace(v.Error.Type + " " + v.Error.Code)
	case v.Type != "":
		return v.Type
	case v.Status != nil:
		if s, ok := v.Status.(string); ok {
			return s
		}
	}
	return ""
}
