package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxSecretFile bounds a secret file: a key is a few hundred bytes, so a
// larger file is a wrong path, not a secret.
const maxSecretFile = 64 << 10

// Load builds the configuration of one process from args (the arguments
// after the subcommand) and getenv (os.Getenv, or a map in tests; nil means
// os.Getenv). It applies, in order and each over the last: the defaults;
// the file named by --config or FLOODGATE_CONFIG; the environment; the
// flags actually given. It then derives the settings whose defaults depend
// on others, and returns the configuration with the positional arguments
// left after the flags. It does not call Validate, so that `floodgate
// config` can print a configuration before refusing it.
//
// An empty environment variable counts as unset, as getenv cannot tell
// the two apart. A value that does not parse is an *Error naming the
// setting and where the value came from. A help flag returns
// flag.ErrHelp; the caller prints Usage.
func Load(args []string, getenv func(string) string) (*Config, []string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	flags, err := parseFlags(args)
	if err != nil {
		return nil, nil, err
	}
	c := Defaults()

	// The file is chosen before any layer is applied, because it is the
	// lowest layer above the defaults, yet the flag naming it is the
	// highest.
	path, pathOrigin := getenv(configOption.env), origin{source: SourceEnv}
	if g, ok := flags.values[configOption]; ok {
		path, pathOrigin = g.raw, origin{source: SourceFlag, detail: "--" + configOption.flag}
	}
	if path != "" {
		c.ConfigFile = path
		c.setOrigin(configOption, pathOrigin)
		if err := c.applyFile(path); err != nil {
			return nil, nil, err
		}
	}

	if err := c.applyEnv(getenv); err != nil {
		return nil, nil, err
	}
	if err := c.applyFlags(flags); err != nil {
		return nil, nil, err
	}
	c.resolve()
	return c, flags.args, nil
}

// given is one value a layer gave a setting: the text itself, or, for a
// secret, the name of a file that holds it.
type given struct {
	raw    string
	isFile bool
	origin origin
}

// set applies one given value to c and records its origin.
func (c *Config) set(o *option, g given, dir string) error {
	raw := g.raw
	if g.isFile {
		path := raw
		if dir != "" && !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		s, err := readSecret(path)
		if err != nil {
			return &Error{Name: o.env, Flag: o.flag, Origin: g.origin.String(), Problem: err.Error()}
		}
		raw = s
	}
	if p := o.parse(c, raw); p != "" {
		return &Error{Name: o.env, Flag: o.flag, Value: o.displayRaw(raw), Origin: g.origin.String(), Problem: p}
	}
	c.setOrigin(o, g.origin)
	return nil
}

// readSecret reads a secret from a file, without the line ending an editor
// or `echo` leaves at its end.
func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes, too large for a secret", path, maxSecretFile)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// applyFile applies the config file at path. A secret's NAME_FILE in it
// is relative to the file's directory, so a file and its secrets can move
// together.
func (c *Config) applyFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	lines, err := parseFile(path, data)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	for _, a := range lines {
		o, isFile := lookupFileName(a.name)
		g := given{raw: a.value, isFile: isFile, origin: origin{source: SourceFile, detail: fmt.Sprintf("%s:%d", path, a.line)}}
		if err := c.set(o, g, dir); err != nil {
			return err
		}
	}
	return nil
}

// applyEnv applies the environment. A secret may come from NAME or from
// NAME_FILE, never both: which one was meant would be a guess.
func (c *Config) applyEnv(getenv func(string) string) error {
	for _, o := range options {
		if o == configOption {
			continue
		}
		v := getenv(o.env)
		var fv string
		if o.secret {
			fv = getenv(o.fileEnv())
		}
		switch {
		case v != "" && fv != "":
			return &Error{Name: o.env, Flag: o.flag, Origin: "env",
				Problem: fmt.Sprintf("both %s and %s are set; set one", o.env, o.fileEnv())}
		case v != "":
			if err := c.set(o, given{raw: v, origin: origin{source: SourceEnv}}, ""); err != nil {
				return err
			}
		case fv != "":
			g := given{raw: fv, isFile: true, origin: origin{source: SourceEnv, detail: o.fileEnv()}}
			if err := c.set(o, g, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// flagValues is what the command line gave: raw text per setting, applied
// only after the file and the environment.
type flagValues struct {
	values map[*option]given
	// both names a secret given both as a value and as a file.
	both *option
	args []string
}

// flagValue records a flag's text; parsing waits until the flags are
// applied, so a bad value gets the same error as from any other source.
type flagValue struct {
	o      *option
	isFile bool
	kind   string
	into   *flagValues
}

func (v *flagValue) String() string { return "" }

func (v *flagValue) Set(s string) error {
	name := "--" + v.o.flag
	if v.isFile {
		name = "--" + v.o.fileFlag()
	}
	if prev, ok := v.into.values[v.o]; ok && prev.isFile != v.isFile {
		v.into.both = v.o
	}
	v.into.values[v.o] = given{raw: s, isFile: v.isFile, origin: origin{source: SourceFlag, detail: name}}
	return nil
}

// IsBoolFlag lets a boolean setting be given as a bare --flag.
func (v *flagValue) IsBoolFlag() bool { return v.kind == "bool" }

// newFlagSet returns a flag set with every setting, recording into fv.
func newFlagSet(fv *flagValues) *flag.FlagSet {
	fs := flag.NewFlagSet("floodgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, o := range options {
		fs.Var(&flagValue{o: o, kind: o.kind(), into: fv}, o.flag, o.help)
		if o.secret {
			fs.Var(&flagValue{o: o, isFile: true, kind: "string", into: fv}, o.fileFlag(), "A file holding "+o.env+".")
		}
	}
	return fs
}

func parseFlags(args []string) (*flagValues, error) {
	fv := &flagValues{values: make(map[*option]given)}
	fs := newFlagSet(fv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		return nil, err
	}
	if o := fv.both; o != nil {
		return nil, &Error{Name: o.env, Flag: o.flag, Origin: "flag",
			Problem: fmt.Sprintf("both --%s and --%s are given; give one", o.flag, o.fileFlag())}
	}
	fv.args = fs.Args()
	return fv, nil
}

// applyFlags applies the flags that were given, in table order.
func (c *Config) applyFlags(fv *flagValues) error {
	for _, o := range options {
		g, ok := fv.values[o]
		if !ok || o == configOption {
			continue
		}
		if err := c.set(o, g, ""); err != nil {
			return err
		}
	}
	return nil
}
