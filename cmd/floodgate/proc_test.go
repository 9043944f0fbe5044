package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds the floodgate command once for the package's tests.
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "floodgate-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "floodgate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: out}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

// proc is a child process whose output is kept and searchable.
type proc struct {
	tb  testing.TB
	cmd *exec.Cmd

	mu   sync.Mutex
	out  bytes.Buffer
	cond *sync.Cond
	done chan struct{}
}

// start runs name with args in its own process group.
func start(tb testing.TB, dir string, env []string, name string, args ...string) *proc {
	tb.Helper()
	return startEnv(tb, dir, append(os.Environ(), env...), name, args...)
}

// startEnv is start with exactly the environment env.
func startEnv(tb testing.TB, dir string, env []string, name string, args ...string) *proc {
	tb.Helper()
	p := &proc{tb: tb, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.cond.Broadcast()
			p.mu.Unlock()
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		pw.Close()
		close(p.done)
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() {
			tb.Logf("output of %s:\n%s", filepath.Base(name), p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// await waits for a line matching re and returns its first submatch.
func (p *proc) await(re *regexp.Regexp, timeout time.Duration) string {
	p.tb.Helper()
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if m := re.FindSubmatch(p.out.Bytes()); m != nil {
			if len(m) > 1 {
				return string(m[1])
			}
			return string(m[0])
		}
		select {
		case <-p.done:
			p.tb.Fatalf("process exited before printing %s:\n%s", re, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("no %s within %v:\n%s", re, timeout, p.out.String())
		}
		p.cond.Wait()
	}
}

// interrupt sends SIGINT to the whole process group, as Ctrl-C in a
// terminal does, and waits for the exit.
func (p *proc) interrupt() {
	p.tb.Helper()
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.tb.Fatalf("no exit within 30s of SIGINT:\n%s", p.output())
	}
}

// kill sends SIGKILL to the whole process group and waits for the exit.
func (p *proc) kill() {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
