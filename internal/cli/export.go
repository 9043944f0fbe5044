package cli

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// Reports `floodgate export` writes.
const (
	reportGiftAid  = "gift-aid"
	reportIERelief = "ie-relief"
)

// ieReliefThreshold is what a donor's gifts in a year must bring in, in
// euro cents, before the charity may claim relief on them under Ireland's
// scheme: EUR 250.00.
const ieReliefThreshold = 250_00

// giftAidColumns are the columns of HMRC's Gift Aid schedule spreadsheet
// for charities, in its order, so that rows paste straight into it.
var giftAidColumns = []string{"Title", "First name or initial", "Last name", "House name or number", "Postcode",
	"Aggregated donations", "Sponsored event", "Donation date", "Amount"}

var ieReliefColumns = []string{"Email", "Name", "First name", "Last name", "House", "Postcode", "Donations",
	"Total (EUR)", "First gift", "Last gift", "Declaration"}

func exportUsage(w io.Writer) {
	fmt.Fprint(w, `floodgate export writes the list a tax-relief claim is made from, as CSV.

Usage:
  floodgate export gift-aid --campaign ID [--out FILE] [flags]
  floodgate export ie-relief --year YEAR [--out FILE] [flags]

gift-aid    One campaign's gifts to claim UK Gift Aid on, in the columns of
            HMRC's Gift Aid schedule spreadsheet: succeeded gifts with a Gift
            Aid declaration and nothing refunded or disputed, oldest first.
            HMRC expects pounds: a campaign in another currency is written in
            its own currency, with a warning.
ie-relief   The donors to ask for a CHY3/CHY4 certificate under Ireland's
            scheme: those whose succeeded EUR gifts created in calendar year
            YEAR (UTC), across every campaign, bring in EUR 250.00 or more after
            refunds and disputes. Only EUR gifts count; gifts in any other
            currency are left out.

  --campaign ID   the campaign (gift-aid)
  --year YEAR     the calendar year, such as 2026 (ie-relief)
  --out FILE      write FILE (created with mode 0600, replaced whole) instead
                  of standard output

The store is the one 'floodgate serve' uses, chosen by the same flags,
environment and config file; 'floodgate serve --help' lists them.
`)
}

// exportOptions are export's own flags.
type exportOptions struct {
	campaign, year, out string
	// given holds the names of the flags that were given.
	given map[string]bool
}

// splitExportFlags takes export's own flags (--campaign, --year, --out)
// and a help flag out of args, in either of the flag package's forms (-x
// or --x, with the value in the same argument after '=' or in the next),
// and returns the other arguments, in order, for config.Load.
//
// They are picked out here because config.Load parses with a closed flag
// set: it rejects any flag it does not know, and floodgate's commands mix
// their flags freely with the configuration's. The only argument this can
// misread is a configuration flag's value, given as the next argument,
// that is itself spelt like one of export's flags (--store --out): no
// store URL, directory or setting reads so. Arguments after "--" are left
// alone, and so refused by loadConfig as positional.
func splitExportFlags(args []string) (opts exportOptions, rest []string, help bool, err error) {
	opts.given = map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		var dst *string
		switch name {
		case "h", "help":
			return opts, nil, true, nil
		case "campaign":
			dst = &opts.campaign
		case "year":
			dst = &opts.year
		case "out":
			dst = &opts.out
		default:
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return opts, nil, false, usageError{fmt.Sprintf("export: --%s needs a value", name)}
			}
			i++
			value = args[i]
		}
		*dst = value
		opts.given[name] = true
	}
	return opts, rest, false, nil
}

// runExport runs `floodgate export REPORT [flags]`. It reads the store
// through floodgate.Reports and writes CSV to standard output or --out.
func runExport(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"export needs a report: floodgate export gift-aid --campaign ID, or floodgate export ie-relief --year YEAR"}
	}
	report := args[0]
	switch report {
	case "-h", "-help", "--help", "help":
		exportUsage(env.Stdout)
		return nil
	case reportGiftAid, reportIERelief:
	default:
		if strings.HasPrefix(report, "-") {
			return usageError{fmt.Sprintf("export: name the report before its flags: floodgate export %s|%s [flags]", reportGiftAid, reportIERelief)}
		}
		return usageError{fmt.Sprintf("export: unknown report %q (valid: %s, %s)", report, reportGiftAid, reportIERelief)}
	}
	opts, rest, help, err := splitExportFlags(args[1:])
	if help {
		exportUsage(env.Stdout)
		return nil
	}
	if err != nil {
		return err
	}
	var year int
	switch report {
	case reportGiftAid:
		if opts.given["year"] {
			return usageError{"export gift-aid takes --campaign, not --year"}
		}
		if opts.campaign == "" {
			return usageError{"export gift-aid needs --campaign ID"}
		}
	case reportIERelief:
		if opts.given["campaign"] {
			return usageError{"export ie-relief covers every campaign: it takes --year, not --campaign"}
		}
		if !opts.given["year"] {
			return usageError{"export ie-relief needs --year YEAR, such as --year 2026"}
		}
		if year, err = strconv.Atoi(opts.year); err != nil || year < 1970 || year > 9999 {
			return usageError{fmt.Sprintf("export ie-relief: --year %q is not a calendar year like 2026", opts.year)}
		}
	}
	if opts.given["out"] && opts.out == "" {
		return usageError{"export: --out needs a file name"}
	}

	cfg, err := loadConfig("export "+report, rest, env)
	if err != nil {
		return asUsageError(err)
	}
	if cfg == nil {
		return nil // help, answered by loadConfig
	}
	// Validate is not called: its rules are about serving (rates, queues,
	// the sandbox beside a PostgreSQL store) and would refuse an export,
	// which only reads the store, for reasons that do not concern it. The
	// store's own setting is checked here, without echoing it: a URL may
	// hold a password.
	if cfg.StoreEngine() == "" {
		return usageError{"FLOODGATE_STORE_URL is not a store floodgate knows (valid: sqlite, sqlite:relative.db, sqlite:///abs/path.db, postgres://...)"}
	}
	// Opening SQLite creates a missing file; an export from a mistyped
	// data directory would then hand the accountant an empty claim.
	if path := cfg.SQLitePath(); path != "" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return usageError{fmt.Sprintf("export: there is no store at %s (is --data-dir or --store right?)", path)}
		}
	}
	// SQLite is opened for reading only, so that an accountant can export
	// while floodgate serves from the same file.
	var store floodgate.Store
	if cfg.StoreEngine() == config.EngineSQLite {
		store, err = sqlite.OpenReader(ctx, cfg.SQLitePath(), 2)
	} else {
		store, _, err = openStore(ctx, cfg, floodgate.SystemClock{})
	}
	if err != nil {
		return err
	}
	defer store.Close()
	reports, ok := store.(floodgate.Reports)
	if !ok {
		return fmt.Errorf("the %s store cannot export reports", cfg.StoreEngine())
	}

	var rows [][]string
	switch report {
	case reportGiftAid:
		rows, err = giftAidRows(ctx, store, reports, opts.campaign, env.Stderr)
	case reportIERelief:
		rows, err = ieReliefRows(ctx, reports, year)
	}
	if err != nil {
		return err
	}
	return writeExport(opts.out, env.Stdout, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		return cw.Error()
	})
}

// asUsageError makes any error in loading the configuration (an unknown
// flag, an unreadable config file) exit 2, as a refused setting does.
func asUsageError(err error) error {
	var ce *config.Error
	var ue usageError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return err
	}
	return usageError{err.Error()}
}

// giftAidRows returns the header and one row per donation to claim Gift
// Aid on in a campaign. A campaign not in pounds is exported all the same,
// in its own currency, with a warning on stderr: a charity may have taken
// UK taxpayers' gifts in euro and must convert them itself.
func giftAidRows(ctx context.Context, store floodgate.Campaigns, reports floodgate.Reports, id string, stderr io.Writer) ([][]string, error) {
	c, err := store.Campaign(ctx, id)
	if floodgate.ErrorCode(err) == floodgate.ENOTFOUND {
		return nil, usageError{fmt.Sprintf("export gift-aid: there is no campaign %q", id)}
	} else if err != nil {
		return nil, err
	}
	cur, ok := floodgate.LookupCurrency(c.Currency)
	if !ok {
		return nil, fmt.Errorf("campaign %q has currency %q, which floodgate does not know", id, c.Currency)
	}
	ds, err := reports.GiftAidDonations(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Currency != "gbp" {
		fmt.Fprintf(stderr, "floodgate: warning: campaign %q is in %s and its amounts are written in %s, but HMRC expects Gift Aid amounts in pounds sterling\n",
			id, strings.ToUpper(c.Currency), strings.ToUpper(c.Currency))
	}
	rows := [][]string{giftAidColumns}
	for _, d := range ds {
		decl := d.Declaration
		if decl == nil {
			return nil, fmt.Errorf("donation %s was returned for Gift Aid without a declaration", d.ID)
		}
		rows = append(rows, []string{
			"", // Title: floodgate does not ask for one, and HMRC does not require it.
			safeCell(decl.FirstName),
			safeCell(hmrcLastName(decl.LastName)),
			safeCell(decl.House),
			safeCell(hmrcPostcode(decl.Postcode)),
			"", // Aggregated donations: every gift is claimed on its own line.
			"", // Sponsored event: floodgate takes no sponsorship.
			d.CreatedAt.UTC().Format("02/01/06"),
			formatMinor(d.Amount, cur.Exponent),
		})
	}
	return rows, nil
}

// ieReliefRows returns the header and one row per donor whose EUR gifts
// created in year (UTC) bring in at least ieReliefThreshold, in order of
// email. Raffle tickets never qualify for the scheme; floodgate has no
// raffles yet, and a donation is the only kind of gift it stores, so there
// is nothing to leave out here. Once raffles exist, their tickets must not
// reach DonorTotals.
func ieReliefRows(ctx context.Context, reports floodgate.Reports, year int) ([][]string, error) {
	eur, _ := floodgate.LookupCurrency("eur")
	from := time.Date(year, time.January, 1, 0, 0, 0, 0, time.UTC)
	totals, err := reports.DonorTotals(ctx, eur.Code, from, from.AddDate(1, 0, 0))
	if err != nil {
		return nil, err
	}
	rows := [][]string{ieReliefColumns}
	for _, t := range totals {
		if t.Amount < ieReliefThreshold {
			continue
		}
		// The latest declaration may be for another scheme (a euro
		// campaign may offer Gift Aid); only an Irish one names the
		// certificate's signatory.
		var decl floodgate.Declaration
		if t.Declaration != nil && t.Declaration.Scheme == floodgate.SchemeIE {
			decl = *t.Declaration
		}
		rows = append(rows, []string{
			safeCell(t.Email),
			safeCell(t.Name),
			safeCell(decl.FirstName),
			safeCell(decl.LastName),
			safeCell(decl.House),
			safeCell(decl.Postcode),
			strconv.FormatInt(t.Count, 10),
			formatMinor(t.Amount, eur.Exponent),
			t.First.UTC().Format(time.DateOnly),
			t.Last.UTC().Format(time.DateOnly),
			safeCell(decl.TextVersion),
		})
	}
	return rows, nil
}

// formatMinor writes amount, in the minor units of a currency with exp
// decimal places, as major units with exactly exp decimals ("25.00"),
// with integer arithmetic only: money is never a float.
func formatMinor(amount int64, exp int) string {
	neg := amount < 0
	u := uint64(amount)
	if neg {
		u = -u // two's complement: exact even for the smallest int64
	}
	s := strconv.FormatUint(u, 10)
	if exp > 0 {
		if len(s) <= exp {
			s = strings.Repeat("0", exp-len(s)+1) + s
		}
		s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ukPostcodeNoSpace is a UK postcode without its space, as the accept path
// allows it.
var ukPostcodeNoSpace = regexp.MustCompile(`^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$`)

// hmrcPostcode writes a postcode as HMRC's schedule requires: in capitals
// with a space before the inward code, its last three characters. The
// accept path upper-cases a Gift Aid postcode but takes it without the
// space ("SW1A1AA"), which the schedule refuses.
func hmrcPostcode(p string) string {
	p = strings.ToUpper(strings.TrimSpace(p))
	if ukPostcodeNoSpace.MatchString(p) {
		p = p[:len(p)-3] + " " + p[len(p)-3:]
	}
	return p
}

// hmrcLastName writes a last name as HMRC's schedule asks: a
// double-barrelled name with a space in place of the hyphen.
func hmrcLastName(s string) string { return strings.ReplaceAll(s, "-", " ") }

// safeCell guards a value a donor typed against formula injection: a
// spreadsheet opening the CSV runs a cell that starts with =, +, -, @, a
// tab or a carriage return as a formula, so such a value is written after
// an apostrophe, which spreadsheets read as "text follows".
func safeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// writeExport runs write on stdout, or, when path is set, on a new file
// that replaces path only once it is complete and synced: an export that
// fails half-way never leaves half a claim behind. The file is created
// with mode 0600, as it holds donors' names and addresses.
func writeExport(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "" {
		return write(stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("export to %s: %w", path, err)
	}
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("export to %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("export to %s: %w", path, err)
	}
	return nil
}
