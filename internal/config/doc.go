// Package config builds floodgate's configuration, in one pass and in one
// order: the defaults, then an optional file, then the environment, then
// the flags of `floodgate serve`, and finally Validate.
//
// Every setting is one row of a single table (options.go) that holds its
// environment name, its flag, its default, its help line, whether it is a
// secret, and the field of Config it fills. Everything else is derived
// from that table: the flag set, the file parser's list of known names,
// the help text, the dump and the per-setting checks. A setting therefore
// cannot be added in one place and forgotten in another.
//
// There is no global configuration. Load returns a *Config that the caller
// passes down; tests build their own with Defaults.
//
// The file named by FLOODGATE_CONFIG or --config holds lines NAME=value,
// with the environment names, so that the same words work in a file, in a
// systemd unit and in a container definition. Secrets (the Stripe key, the
// webhook secrets and the admin token) may also be read from a file named
// by NAME_FILE or --flag-file, which keeps them out of the process list and
// out of the environment of child processes.
//
// Load records where each value came from, and Dump prints every setting
// with that source and with secrets masked, so an operator can see what
// the server will really run with. Validate refuses settings that are
// dangerous or contradict one another; its error is one line that names
// the setting by its environment name and its flag, because that line is
// what an operator reads when the server refuses to start.
package config
