package config

import (
	"reflect"
	"strings"
	"testing"
	"unicode"
)

func TestParseFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []assignment
		wantErr string // the whole error; the file is named f.conf
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# floodgate\n\n   # indented comment\n\t\n"},
		{name: "plain", in: "FLOODGATE_ADDR=:8080\nFLOODGATE_BATCH_MAX = 100 \n",
			want: []assignment{{"FLOODGATE_ADDR", ":8080", 1}, {"FLOODGATE_BATCH_MAX", "100", 2}}},
		{name: "CRLF and BOM", in: "\ufeffFLOODGATE_ADDR=:1\r\n\r\nFLOODGATE_LEASE=2m\r\n",
			want: []assignment{{"FLOODGATE_ADDR", ":1", 1}, {"FLOODGATE_LEASE", "2m", 3}}},
		{name: "double quotes", in: `FLOODGATE_DATA_DIR="/srv/flood gate"`,
			want: []assignment{{"FLOODGATE_DATA_DIR", "/srv/flood gate", 1}}},
		{name: "single quotes keep double ones", in: `FLOODGATE_DATA_DIR='say "hi"'`,
			want: []assignment{{"FLOODGATE_DATA_DIR", `say "hi"`, 1}}},
		{name: "quotes keep a hash and spaces", in: `FLOODGATE_ADMIN_TOKEN=" a #b "  # comment`,
			want: []assignment{{"FLOODGATE_ADMIN_TOKEN", " a #b ", 1}}},
		{name: "inline comment", in: "FLOODGATE_BATCH_MAX=100  # per commit\nFLOODGATE_BATCH_WAIT=1ms\t# tab",
			want: []assignment{{"FLOODGATE_BATCH_MAX", "100", 1}, {"FLOODGATE_BATCH_WAIT", "1ms", 2}}},
		{name: "hash inside a word", in: "FLOODGATE_PUBLIC_URL=https://x.ie/#top",
			want: []assignment{{"FLOODGATE_PUBLIC_URL", "https://x.ie/#top", 1}}},
		{name: "empty values", in: "FLOODGATE_PUBLIC_URL=\nFLOODGATE_STRIPE_API_BASE=  # default\nSTRIPE_SECRET_KEY=\"\"",
			want: []assignment{{"FLOODGATE_PUBLIC_URL", "", 1}, {"FLOODGATE_STRIPE_API_BASE", "", 2}, {"STRIPE_SECRET_KEY", "", 3}}},
		{name: "equals in the value", in: "FLOODGATE_STORE_URL=postgres://db/fg?sslmode=require",
			want: []assignment{{"FLOODGATE_STORE_URL", "postgres://db/fg?sslmode=require", 1}}},
		{name: "secret file", in: "STRIPE_SECRET_KEY_FILE=/run/secrets/stripe",
			want: []assignment{{"STRIPE_SECRET_KEY_FILE", "/run/secrets/stripe", 1}}},

		{name: "unknown name", in: "# c\nFLOODGATE_ADDR=:1\nFLOODGATE_NOPE=1\n",
			wantErr: `f.conf:3: unknown setting "FLOODGATE_NOPE"`},
		{name: "misspelt name", in: "FLOODGATE_ADRR=:1",
			wantErr: `f.conf:1: unknown setting "FLOODGATE_ADRR" (did you mean FLOODGATE_ADDR?)`},
		{name: "lower-case name", in: "floodgate_addr=:1",
			wantErr: `f.conf:1: unknown setting "floodgate_addr" (did you mean FLOODGATE_ADDR?)`},
		{name: "flag name", in: "batch-max=1",
			wantErr: `f.conf:1: unknown setting "batch-max"`},
		{name: "file variant of a non-secret", in: "FLOODGATE_ADDR_FILE=/x",
			wantErr: `f.conf:1: FLOODGATE_ADDR is not a secret; only FLOODGATE_ADMIN_TOKEN, STRIPE_SECRET_KEY or STRIPE_WEBHOOK_SECRET can be read from a file`},
		{name: "config in config", in: "FLOODGATE_CONFIG=other.conf",
			wantErr: `f.conf:1: FLOODGATE_CONFIG cannot be set in a config file`},
		{name: "no equals", in: "\n\nFLOODGATE_ADDR :1",
			wantErr: `f.conf:3: expected NAME=value, got "FLOODGATE_ADDR :1"`},
		{name: "export prefix", in: "export FLOODGATE_ADDR=:1",
			wantErr: `f.conf:1: unknown setting "export FLOODGATE_ADDR"`},
		{name: "no name", in: "=1",
			wantErr: `f.conf:1: a name is missing before '='`},
		{name: "unterminated quote", in: `FLOODGATE_ADDR=":1`,
			wantErr: `f.conf:1: FLOODGATE_ADDR: no closing "`},
		{name: "text after quote", in: `FLOODGATE_ADDR=":1" :2`,
			wantErr: `f.conf:1: FLOODGATE_ADDR: unexpected ":2" after the closing "`},
		{name: "set twice", in: "FLOODGATE_ADDR=:1\nFLOODGATE_ADDR=:2",
			wantErr: `f.conf:2: FLOODGATE_ADDR is already set on line 1`},
		{name: "secret and its file", in: "STRIPE_SECRET_KEY=sk_test_x\nSTRIPE_SECRET_KEY_FILE=/k",
			wantErr: `f.conf:2: STRIPE_SECRET_KEY is already set on line 1`},
		{name: "control character", in: "FLOODGATE_ADDR=:1\x00",
			wantErr: `f.conf:1: FLOODGATE_ADDR: a control character ('\x00') in the value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseFile("f.conf", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v\nwant %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestLoadNamesFileErrors checks that a file's syntax error reaches the
// caller of Load with the file's path and line.
func TestLoadNamesFileErrors(t *testing.T) {
	t.Parallel()
	_, path, err := loadErr(t, "FLOODGATE_ADDR=:1\nFLOODGATE_BTCH_MAX=1\n", nil)
	want := path + `:2: unknown setting "FLOODGATE_BTCH_MAX" (did you mean FLOODGATE_BATCH_MAX?)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestQuoteValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":            "",
		":8080":       ":8080",
		"a b":         "a b",
		"a #b":        `"a #b"`,
		"#a":          `"#a"`,
		" a":          `" a"`,
		`"a`:          `'"a'`,
		`'a`:          `"'a"`,
		"a\tb":        "a\tb",
		"a\nb":        `"a\nb"`,
		`" #'`:        `"\" #'"`,
		"https://x#y": "https://x#y",
	} {
		if got := quoteValue(in); got != want {
			t.Errorf("quoteValue(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzParseFile checks that the parser never panics, that what it accepts
// is well formed (known names, one line per value, no control characters,
// increasing line numbers), and that what it accepts, written back with
// quoteValue, parses to the same assignments.
func FuzzParseFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"# comment\n\nFLOODGATE_ADDR=:8080\n",
		"FLOODGATE_DATA_DIR=\"/srv/flood gate\"  # quoted\r\n",
		"FLOODGATE_ADMIN_TOKEN=' a #b '\n",
		"FLOODGATE_PUBLIC_URL=https://x.ie/#top # c\n",
		"STRIPE_SECRET_KEY_FILE=/run/secrets/k\nSTRIPE_WEBHOOK_SECRET=whsec_a,whsec_b\n",
		"FLOODGATE_ADDR=\":1\n",
		"FLOODGATE_ADDR=:1\nFLOODGATE_ADDR=:2\n",
		"\ufeffFLOODGATE_NOPE=1",
		"FLOODGATE_STORE_URL=sqlite:'odd\" name.db\n",
		"FLOODGATE_LOG_LEVEL= #\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseFile("fuzz.conf", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.conf:") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		last := 0
		var back strings.Builder
		for _, a := range got {
			if o, _ := lookupFileName(a.name); o == nil || o == configOption {
				t.Fatalf("accepted name %q", a.name)
			}
			if a.line <= last {
				t.Fatalf("line %d after line %d", a.line, last)
			}
			last = a.line
			for _, r := range a.value {
				if unicode.IsControl(r) && r != '\t' {
					t.Fatalf("value %q holds a control character", a.value)
				}
			}
			back.WriteString(a.name + "=" + quoteValue(a.value) + "\n")
		}
		again, err := parseFile("back.conf", []byte(back.String()))
		if err != nil {
			t.Fatalf("written back %q: %v", back.String(), err)
		}
		if len(again) != len(got) {
			t.Fatalf("written back: %d assignments, want %d", len(again), len(got))
		}
		for i := range got {
			if again[i].name != got[i].name || again[i].value != got[i].value {
				t.Fatalf("written back %q=%q, want %q=%q", again[i].name, again[i].value, got[i].name, got[i].value)
			}
		}
	})
}
