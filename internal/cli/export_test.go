package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/postgres"
	"github.com/floodgate/floodgate/internal/sqlite"
	"github.com/floodgate/floodgate/internal/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// exportGifts stores the export tests' fixed data set in s, with clock
// stamping each gift at its own time. Every case the two reports must get
// right is here once, named by its donor.
func exportGifts(tb testing.TB, s floodgate.Store, clock *clocktest.Manual) {
	tb.Helper()
	at := func(y int, m time.Month, d, h, min, sec int) time.Time {
		return time.Date(y, m, d, h, min, sec, 0, time.UTC)
	}
	created := at(2025, 12, 1, 0, 0, 0)
	storetest.CreateCampaign(tb, s, created, "uk-appeal", "gbp", floodgate.SchemeUKGiftAid)
	storetest.CreateCampaign(tb, s, created, "uk-euro", "eur", floodgate.SchemeUKGiftAid)
	storetest.CreateCampaign(tb, s, created, "ie-winter", "eur", floodgate.SchemeIE)
	storetest.CreateCampaign(tb, s, created, "ie-spring", "eur", floodgate.SchemeIE)
	storetest.CreateCampaign(tb, s, created, "us-drive", "usd")

	give := func(gs ...storetest.Gift) {
		tb.Helper()
		storetest.Give(tb, s, clock, gs...)
	}
	gbp := func(t time.Time, email string, amount int64, decl *floodgate.Declaration) storetest.Gift {
		return storetest.Gift{At: t, Campaign: "uk-appeal", Currency: "gbp", Email: email, Name: "Donor", Amount: amount, Decl: decl}
	}
	eur := func(t time.Time, campaign, email, name string, amount int64, decl *floodgate.Declaration) storetest.Gift {
		return storetest.Gift{At: t, Campaign: campaign, Currency: "eur", Email: email, Name: name, Amount: amount, Decl: decl}
	}
	ie := func(first, last, house, postcode, version string) *floodgate.Declaration {
		return &floodgate.Declaration{Scheme: floodgate.SchemeIE, TextVersion: version, FirstName: first, LastName: last,
			House: house, Postcode: postcode}
	}

	// Gift Aid, campaign uk-appeal (GBP).
	give(gbp(at(2026, 4, 6, 9, 15, 0), "ada@example.org", 2500, storetest.UKDecl("Ada", "Lovelace", "12", "SW1A 1AA")))
	// 23:30 UTC is already 7 April in London: the date is the UTC one. The
	// postcode was typed without its space; the surname is double-barrelled;
	// the house has a comma.
	give(gbp(at(2026, 4, 6, 23, 30, 0), "sean@example.org", 30, storetest.UKDecl("Seán", "Ó Briain-Walsh", "Flat 3, Rose Court", "BT11AA")))
	give(gbp(at(2026, 5, 1, 0, 0, 0), "mary@example.org", 100_000, storetest.UKDecl("Mary", "O'Neill", `The "Old" Mill`, "EH1 1YZ")))
	// A name that a spreadsheet would run as a formula.
	give(gbp(at(2026, 12, 31, 23, 59, 59), "formula@example.org", 1999, storetest.UKDecl("=1+1", "Test", "1", "CF10 1AA")))
	// One batch: one creation time, so the line decides the order.
	give(gbp(at(2026, 6, 15, 12, 0, 0), "first@example.org", 1000, storetest.UKDecl("First", "Inbatch", "1", "M1 1AE")),
		gbp(at(2026, 6, 15, 12, 0, 0), "second@example.org", 2000, storetest.UKDecl("Second", "Inbatch", "2", "M1 1AE")))
	// Stored after the others, created before them: it comes first.
	give(gbp(at(2026, 4, 1, 8, 0, 0), "early@example.org", 5000, storetest.UKDecl("E", "Early", "Early House", "B1 1AA")))
	// Never claimed: a refund or a dispute in any part, no declaration,
	// or not succeeded.
	for _, change := range []func(*storetest.Gift){
		func(g *storetest.Gift) { g.Refunded = 500 },
		func(g *storetest.Gift) { g.Disputed = 2500 },
		func(g *storetest.Gift) { g.Decl = nil },
		func(g *storetest.Gift) { g.Status = floodgate.StatusFailed },
		func(g *storetest.Gift) { g.Status = floodgate.StatusCanceled },
		func(g *storetest.Gift) { g.Status = floodgate.StatusProcessing },
	} {
		g := gbp(at(2026, 7, 1, 10, 0, 0), "never@example.org", 2500, storetest.UKDecl("Never", "Claimed", "9", "SW1A 2AA"))
		change(&g)
		give(g)
	}
	// Gift Aid in euro, campaign uk-euro: exported with a warning.
	give(storetest.Gift{At: at(2026, 3, 3, 3, 0, 0), Campaign: "uk-euro", Currency: "eur", Email: "pat@example.ie",
		Name: "Pat Kelly", Amount: 5000, Decl: storetest.UKDecl("Pat", "Kelly", "7", "BT7 1NN")})

	// Ireland, 2026, EUR only. Aoife: exactly EUR 250.00 in one gift.
	give(eur(at(2026, 3, 17, 12, 0, 0), "ie-winter", "aoife@example.ie", "Aoife Murphy", 25_000,
		ie("Aoife", "Murphy", "4 Main Street", "D02 X285", "chy3-2026")))
	// Brendan: EUR 249.99, one cent short.
	give(eur(at(2026, 3, 18, 12, 0, 0), "ie-winter", "brendan@example.ie", "Brendan", 24_999, ie("Brendan", "Ryan", "", "", "chy3-2026")))
	// Ciara: over only thanks to three gifts, in two campaigns, under three
	// spellings of her address, at both ends of the year; her last gift is
	// nameless. Her gifts just outside the year do not count.
	give(eur(at(2025, 12, 31, 23, 59, 59), "ie-winter", "ciara@example.ie", "Ciara", 50_000, nil))
	give(eur(at(2026, 1, 1, 0, 0, 0), "ie-winter", "Ciara@Example.ie", "Ciara Byrne", 10_000, ie("Ciara", "Byrne", "", "", "chy4-2026")))
	give(eur(at(2026, 6, 1, 9, 0, 0), "ie-spring", " ciara@example.ie ", "Ciara Byrne", 10_000, nil))
	give(eur(at(2026, 12, 31, 23, 59, 59), "ie-spring", "CIARA@EXAMPLE.IE", "", 6_000, nil))
	give(eur(at(2027, 1, 1, 0, 0, 0), "ie-spring", "ciara@example.ie", "Ciara", 90_000, nil))
	// Declan: EUR 300.00, pushed under by a refund of EUR 60.00.
	g := eur(at(2026, 9, 1, 12, 0, 0), "ie-spring", "declan@example.ie", "Declan", 30_000, ie("Declan", "Walsh", "", "", "chy3-2026"))
	g.Refunded = 6_000
	give(g)
	// Eimear: over despite a gift lost to a dispute. That gift was to a euro
	// campaign offering Gift Aid, and its UK declaration is her latest.
	give(eur(at(2026, 2, 2, 12, 0, 0), "ie-winter", "eimear@example.ie", "Eimear", 40_000, ie("Eimear", "Nic Gearailt", "", "", "chy3-2026")))
	g = eur(at(2026, 3, 3, 12, 0, 0), "uk-euro", "eimear@example.ie", "Eimear", 10_000, storetest.UKDecl("Eimear", "Fitzgerald", "2", "BT1 2AA"))
	g.Disputed = 10_000
	give(g)
	// Fiona: over, without any declaration yet: the one to ask.
	give(eur(at(2026, 10, 10, 10, 0, 0), "ie-winter", "fiona@example.ie", "Fiona Kelly", 30_000, nil))
	// Gráinne: one donor in upper and lower case beyond ASCII.
	give(eur(at(2026, 4, 4, 4, 0, 0), "ie-winter", "GRÁINNE@example.ie", "Gráinne", 15_000, nil))
	give(eur(at(2026, 4, 5, 4, 0, 0), "ie-spring", "gráinne@example.ie", "Gráinne Ní Bhriain", 15_000, nil))
	// A name and an address a spreadsheet would run as formulas.
	give(eur(at(2026, 5, 5, 5, 0, 0), "ie-winter", "=sum@example.ie", "@Hugh, \"the\" donor", 25_001, nil))
	// Not euro, or not succeeded: never counted.
	give(storetest.Gift{At: at(2026, 5, 5, 5, 0, 0), Campaign: "us-drive", Currency: "usd", Email: "usd@example.org",
		Name: "Dollar", Amount: 100_000})
	for _, st := range []floodgate.DonationStatus{floodgate.StatusFailed, floodgate.StatusCanceled,
		floodgate.StatusRequiresAction, floodgate.StatusProcessing, floodgate.StatusAccepted} {
		g := eur(at(2026, 8, 8, 8, 0, 0), "ie-winter", "unpaid@example.ie", "Unpaid", 50_000, nil)
		g.Status = st
		give(g) // accepted comes last: see storetest.Give
	}
}

// exportEnv is an Env with its own output buffers and environment.
type exportEnv struct {
	stdout, stderr bytes.Buffer
	vars           map[string]string
}

func (e *exportEnv) env() Env {
	return Env{Stdout: &e.stdout, Stderr: &e.stderr, Getenv: func(k string) string { return e.vars[k] }}
}

// export runs `floodgate export args...` and returns its exit code, as
// Run would.
func (e *exportEnv) export(args ...string) int {
	return exitCode(runExport(context.Background(), args, e.env()), &e.stderr)
}

// sqliteExportDir returns a data directory holding the data set in its
// SQLite store, closed (and so unlocked) for the export to open.
func sqliteExportDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	clock := clocktest.New(storetest.Epoch)
	s, err := sqlite.Open(context.Background(), sqlite.Options{Path: sqlite.DefaultPath(dir), Clock: clock})
	if err != nil {
		tb.Fatal(err)
	}
	exportGifts(tb, s, clock)
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func checkGolden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (go test ./internal/cli -run Export -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs; if the change is right, run go test ./internal/cli -run Export -update\n--- got:\n%s--- want:\n%s", path, got, want)
	}
}

// TestExportGolden runs both exports on the SQLite store exactly as
// `floodgate export` does, the data directory coming once from a flag and
// once from the environment, and compares them with the golden files.
func TestExportGolden(t *testing.T) {
	dir := sqliteExportDir(t)

	var e exportEnv
	if code := e.export("gift-aid", "--data-dir", dir, "--campaign", "uk-appeal"); code != ExitOK {
		t.Fatalf("gift-aid: exit %d: %s", code, e.stderr.String())
	}
	if e.stderr.Len() != 0 {
		t.Fatalf("gift-aid in pounds wrote to stderr: %s", e.stderr.String())
	}
	checkGolden(t, "gift-aid.golden.csv", e.stdout.Bytes())

	e = exportEnv{vars: map[string]string{"FLOODGATE_DATA_DIR": dir}}
	if code := e.export("ie-relief", "--year=2026"); code != ExitOK {
		t.Fatalf("ie-relief: exit %d: %s", code, e.stderr.String())
	}
	checkGolden(t, "ie-relief.golden.csv", e.stdout.Bytes())
}

// TestExportPostgres runs both exports on a PostgreSQL store holding the
// same data set: the output must be the same golden files, byte for byte.
func TestExportPostgres(t *testing.T) {
	url := os.Getenv("FLOODGATE_TEST_POSTGRES")
	if url == "" {
		t.Skip("set FLOODGATE_TEST_POSTGRES=postgres://... to run the exports on PostgreSQL")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("FLOODGATE_TEST_POSTGRES is set but the server cannot be reached: %v", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "fg_export_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	clock := clocktest.New(storetest.Epoch)
	s, err := postgres.Open(ctx, postgres.Options{URL: url, Schema: schema, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	exportGifts(t, s, clock)
	_ = s.Close()

	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	store := url + sep + "search_path=" + schema
	for _, tt := range []struct {
		args   []string
		golden string
	}{
		{[]string{"gift-aid", "--campaign", "uk-appeal"}, "gift-aid.golden.csv"},
		{[]string{"ie-relief", "--year", "2026"}, "ie-relief.golden.csv"},
	} {
		e := exportEnv{vars: map[string]string{"FLOODGATE_STORE_URL": store, "FLOODGATE_DATA_DIR": t.TempDir()}}
		if code := e.export(tt.args...); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", tt.args, code, e.stderr.String())
		}
		if *update {
			continue // the golden files come from the SQLite run
		}
		checkGolden(t, tt.golden, e.stdout.Bytes())
	}
}

// TestExportOut: --out writes the same CSV to a file only it can read,
// replacing any file there, and leaves no temporary file behind; a
// campaign not in pounds is exported with one warning line.
func TestExportOut(t *testing.T) {
	dir := sqliteExportDir(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "claim.csv")
	if err := os.WriteFile(out, []byte("an older, longer claim that must go entirely\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var toStdout, toFile exportEnv
	if code := toStdout.export("ie-relief", "--year", "2026", "--data-dir", dir); code != ExitOK {
		t.Fatalf("exit %d: %s", code, toStdout.stderr.String())
	}
	if code := toFile.export("ie-relief", "--out", out, "--year", "2026", "--data-dir", dir); code != ExitOK {
		t.Fatalf("--out: exit %d: %s", code, toFile.stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, toStdout.stdout.Bytes()) || toFile.stdout.Len() != 0 {
		t.Fatalf("--out wrote:\n%s\nstdout had %d bytes; want what stdout got without it:\n%s", got, toFile.stdout.Len(), toStdout.stdout.Bytes())
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 1 {
		t.Fatalf("%s holds %d files, want only claim.csv", outDir, len(entries))
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("claim.csv mode %v, want 0600: it holds names and addresses", fi.Mode().Perm())
	}

	var e exportEnv
	if code := e.export("gift-aid", "--campaign", "uk-euro", "--data-dir", dir); code != ExitOK {
		t.Fatalf("uk-euro: exit %d: %s", code, e.stderr.String())
	}
	want := strings.Join(giftAidColumns, ",") + "\n,Pat,Kelly,7,BT7 1NN,,,03/03/26,50.00\n"
	if e.stdout.String() != want {
		t.Fatalf("uk-euro export:\n%s\nwant:\n%s", e.stdout.String(), want)
	}
	warn := e.stderr.String()
	if strings.Count(warn, "\n") != 1 || !strings.Contains(warn, "EUR") || !strings.Contains(warn, "pounds") {
		t.Fatalf("uk-euro warning = %q, want one line saying HMRC expects pounds", warn)
	}
}

// TestExportRefusals: every mistake on the command line exits 2 with one
// line that says what to do, before any file is written.
func TestExportRefusals(t *testing.T) {
	dir := sqliteExportDir(t)
	missing := filepath.Join(t.TempDir(), "empty")
	tests := []struct {
		name string
		args []string
		says string
	}{
		{"no report", nil, "needs a report"},
		{"unknown report", []string{"chy3"}, "unknown report"},
		{"flags before the report", []string{"--year", "2026", "ie-relief"}, "name the report before its flags"},
		{"gift-aid without a campaign", []string{"gift-aid"}, "--campaign"},
		{"gift-aid with a year", []string{"gift-aid", "--campaign", "uk-appeal", "--year", "2026"}, "not --year"},
		{"a flag without its value", []string{"gift-aid", "--campaign"}, "needs a value"},
		{"ie-relief without a year", []string{"ie-relief"}, "--year"},
		{"ie-relief with a campaign", []string{"ie-relief", "--year", "2026", "--campaign", "ie-winter"}, "not --campaign"},
		{"a year that is not one", []string{"ie-relief", "--year", "26th"}, "calendar year"},
		{"an empty --out", []string{"ie-relief", "--year", "2026", "--out="}, "--out"},
		{"an unknown flag", []string{"ie-relief", "--year", "2026", "--yeer", "2027"}, "yeer"},
		{"a stray argument", []string{"ie-relief", "--year", "2026", "2027"}, "takes no arguments"},
		{"an unknown campaign", []string{"gift-aid", "--campaign", "nope"}, `no campaign "nope"`},
		{"an unparsable setting", []string{"ie-relief", "--year", "2026", "--read-conns", "many"}, "FLOODGATE_READ_CONNS"},
		{"an unknown store", []string{"ie-relief", "--year", "2026", "--store", "mysql://u:secret@db/x"}, "FLOODGATE_STORE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e exportEnv
			out := filepath.Join(t.TempDir(), "claim.csv")
			// The report, then a good store and output, then the case's
			// flags: a flag left without its value is the last argument.
			args := tt.args
			if len(args) > 0 {
				args = append([]string{args[0], "--data-dir", dir, "--out", out}, args[1:]...)
			}
			if code := e.export(args...); code != ExitConfig {
				t.Fatalf("exit %d, want %d; stderr: %s", code, ExitConfig, e.stderr.String())
			}
			line := strings.TrimSuffix(e.stderr.String(), "\n")
			t.Log(line)
			if strings.Contains(line, "\n") || !strings.Contains(line, tt.says) || strings.Contains(line, "secret") {
				t.Fatalf("stderr %q: want one line saying %q (and no password)", e.stderr.String(), tt.says)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a refused export wrote its file")
			}
		})
	}

	// A data directory with no store is not an empty claim.
	var e exportEnv
	if code := e.export("ie-relief", "--year", "2026", "--data-dir", missing); code != ExitConfig ||
		!strings.Contains(e.stderr.String(), "no store at") {
		t.Fatalf("missing store: exit %d, %q", code, e.stderr.String())
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("exporting from a missing data directory created it")
	}
}

// TestExportHelp: help is asked for anywhere and answered on stdout.
func TestExportHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"gift-aid", "-h"}, {"ie-relief", "--year", "2026", "--help"}} {
		var e exportEnv
		if code := e.export(args...); code != ExitOK || !strings.Contains(e.stdout.String(), "Only EUR gifts count") {
			t.Fatalf("%v: exit %d, stdout %q", args, code, e.stdout.String())
		}
	}
}

func TestFormatMinor(t *testing.T) {
	tests := []struct {
		amount int64
		exp    int
		want   string
	}{
		{2500, 2, "25.00"},
		{30, 2, "0.30"},
		{5, 2, "0.05"},
		{0, 2, "0.00"},
		{24_999, 2, "249.99"},
		{100_000, 2, "1000.00"},
		{-150, 2, "-1.50"},
		{2500, 0, "2500"},
		{1, 3, "0.001"},
		{9_223_372_036_854_775_807, 2, "92233720368547758.07"},
		{-9_223_372_036_854_775_808, 2, "-92233720368547758.08"},
	}
	for _, tt := range tests {
		if got := formatMinor(tt.amount, tt.exp); got != tt.want {
			t.Errorf("formatMinor(%d, %d) = %q, want %q", tt.amount, tt.exp, got, tt.want)
		}
	}
}

func TestHMRCPostcode(t *testing.T) {
	for in, want := range map[string]string{
		"SW1A 1AA": "SW1A 1AA",
		"SW1A1AA":  "SW1A 1AA",
		"bt11aa":   "BT1 1AA",
		"M11AE":    "M1 1AE",
		"CR26XH":   "CR2 6XH",
		"D02 X285": "D02 X285", // not a UK postcode: left as typed
	} {
		if got := hmrcPostcode(in); got != want {
			t.Errorf("hmrcPostcode(%q) = %q, want %q", in, got, want)
		}
	}
}
