// Package cli holds floodgate's subcommands. It is the only package that
// knows which engines exist and picks the concrete ones (store, provider)
// from the configuration.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitError  = 1
	ExitConfig = 2 // bad arguments or a refused configuration
)

// Env is what a command may touch of the outside world; tests give their
// own.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Run runs the subcommand named by args[0] and returns the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 {
		usage(env.Stderr)
		return ExitConfig
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, rest, env)
	case "config":
		err = showConfig(rest, env)
	case "sandbox":
		err = runSandbox(ctx, rest, env)
	case "load":
		err = runLoadCmd(ctx, rest, env)
	case "export":
		err = runExport(ctx, rest, env)
	case "admin-token":
		err = runAdminToken(rest, env)
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "floodgate", Version())
		return ExitOK
	case "help", "-h", "--help":
		usage(env.Stdout)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "floodgate: unknown command %q\n", cmd)
		usage(env.Stderr)
		return ExitConfig
	}
	return exitCode(err, env.Stderr)
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ce *config.Error
	var ue usageError
	switch {
	case errors.As(err, &ce), errors.As(err, &ue):
		fmt.Fprintln(stderr, "floodgate:", oneLine(err.Error()))
		return ExitConfig
	case errors.Is(err, context.Canceled):
		return ExitOK
	}
	fmt.Fprintln(stderr, "floodgate:", oneLine(err.Error()))
	return ExitError
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func usage(w io.Writer) {
	fmt.Fprint(w, `floodgate takes a donation drive through the night millions arrive at once.

Usage:
  floodgate serve [flags]      run the service (--demo adds a demo campaign)
  floodgate config [flags]     print the effective configuration; exit 2 if it is refused
  floodgate sandbox [flags]    run the Stripe-compatible sandbox provider on its own
  floodgate load [flags]       an open-model load test against a running floodgate
  floodgate export gift-aid --campaign ID | ie-relief --year Y
                               tax-relief claims as CSV
  floodgate admin-token reset  a new admin token for the data directory, printed once
  floodgate version            print the version

Every serve flag is also an environment variable; 'floodgate serve --help' lists them.
`)
}

// Version is the module version the binary was built from.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newLogger builds the process logger from the configuration.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated by config
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(redactHandler{slog.NewJSONHandler(w, opts)})
	}
	return slog.New(redactHandler{slog.NewTextHandler(w, opts)})
}

// loadConfig loads the configuration for command cmd, which takes no
// positional arguments. A nil config with a nil error means --help was
// asked for and answered.
func loadConfig(cmd string, args []string, env Env) (*config.Config, error) {
	cfg, rest, err := config.Load(args, env.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		config.Usage(env.Stdout)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, usageError{fmt.Sprintf("%s takes no arguments, got %q", cmd, rest)}
	}
	return cfg, nil
}

func showConfig(args []string, env Env) error {
	cfg, err := loadConfig("config", args, env)
	if cfg == nil {
		return err
	}
	if err := cfg.Dump(env.Stdout); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	return checkStore(cfg)
}

// checkStore refuses a store that `floodgate serve` could not open, the
// way it would open it, without opening it: `floodgate config` and
// `floodgate serve` both run it before anything starts.
func checkStore(cfg *config.Config) error {
	if cfg.StoreEngine() != config.EngineSQLite {
		return nil
	}
	if err := sqlite.CheckPath(cfg.SQLitePath()); err != nil {
		name := "FLOODGATE_STORE_URL"
		if cfg.StoreURL == "sqlite" {
			name = "FLOODGATE_DATA_DIR"
		}
		return cfg.Refuse(name, "the SQLite store cannot be opened there: %v", err)
	}
	return nil
}
