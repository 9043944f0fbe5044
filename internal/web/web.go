package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// files holds the page templates and the static assets.
//
//go:embed templates static
var files embed.FS

// Payments modes, as FLOODGATE_PAYMENTS spells them.
const (
	PaymentsSandbox = "sandbox"
	PaymentsStripe  = "stripe"
)

// TextVersion names the wording of the tax declarations shown on the
// donation page; a donation's declaration carries it so the charity can
// prove what the donor agreed to. New wording needs a new version.
const TextVersion = "2026-01"

// Options configures the pages.
type Options struct {
	// Payments is "sandbox" or "stripe" ("" means sandbox).
	//
	// In sandbox mode the donation page offers Stripe's test payment
	// methods (pm_card_visa, pm_card_chargeDeclined, ...) to choose from.
	// In stripe mode it says that card entry through Stripe.js comes later
	// and keeps the form's submit button disabled; the page's policy then
	// admits https://js.stripe.com, but nothing loads it yet.
	Payments string
}

// testCard is one of Stripe's test payment methods offered in sandbox mode.
type testCard struct {
	ID    string // the payment method id sent to the API
	Label string // what the donor reads
}

// testCards are the payment methods the sandbox page offers, with Stripe's
// meaning; the first is the default.
var testCards = []testCard{
	{"pm_card_visa", "Visa — succeeds"},
	{"pm_card_mastercard", "Mastercard — succeeds"},
	{"pm_card_chargeDeclined", "Visa — declined"},
	{"pm_card_chargeDeclinedInsufficientFunds", "Visa — declined, insufficient funds"},
	{"pm_card_authenticationRequired", "Visa — needs 3-D Secure"},
}

// campaignIDRE is the API's campaign id rule; the page refuses any other id
// rather than render a page for a campaign that cannot exist.
var campaignIDRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// handler serves the pages.
type handler struct {
	mux      *http.ServeMux
	payments string
	csp      string
	assets   *assets
	index    *template.Template
	campaign *template.Template
	notFound *template.Template
}

// New returns the handler of the web pages. It panics if opts.Payments is
// neither "sandbox", "stripe" nor empty, or if the embedded files are
// broken: both are programming errors, caught by the configuration and the
// tests before a server runs.
func New(opts Options) http.Handler {
	switch opts.Payments {
	case "":
		opts.Payments = PaymentsSandbox
	case PaymentsSandbox, PaymentsStripe:
	default:
		panic(fmt.Sprintf("web: unknown payments mode %q; valid: %s, %s", opts.Payments, PaymentsSandbox, PaymentsStripe))
	}
	a, err := loadAssets(files, "static")
	if err != nil {
		panic("web: " + err.Error())
	}
	h := &handler{
		mux:      http.NewServeMux(),
		payments: opts.Payments,
		csp:      contentSecurityPolicy(opts.Payments),
		assets:   a,
	}
	h.index = h.parse("index.html")
	h.campaign = h.parse("campaign.html")
	h.notFound = h.parse("notfound.html")

	h.mux.HandleFunc("GET /{$}", h.serveIndex)
	h.mux.HandleFunc("GET /c/{id}", h.serveCampaign)
	h.mux.HandleFunc("GET /assets/{name}", h.serveAsset)
	h.mux.HandleFunc("/", h.serveNotFound)
	return h
}

// ServeHTTP sets the headers every answer carries, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows the page to load from its own origin only.
// Stripe mode adds js.stripe.com for scripts and frames, which is what
// Stripe.js needs to put its card field on the page.
func contentSecurityPolicy(payments string) string {
	script, frame := "'self'", "'self'"
	if payments == PaymentsStripe {
		script += " https://js.stripe.com"
		frame += " https://js.stripe.com"
	}
	return strings.Join([]string{
		"default-src 'self'",
		"script-src " + script,
		"frame-src " + frame,
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")
}

// parse builds one page from the shared layout and the page's own file.
func (h *handler) parse(page string) *template.Template {
	funcs := template.FuncMap{"asset": h.assets.url}
	return template.Must(template.New(page).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+page))
}

// pageData is what every template may use.
type pageData struct {
	Title       string
	Payments    string
	Stripe      bool
	CampaignID  string
	TestCards   []testCard
	TextVersion string
}

func (h *handler) data(title string) pageData {
	return pageData{Title: title, Payments: h.payments, Stripe: h.payments == PaymentsStripe,
		TestCards: testCards, TextVersion: TextVersion}
}

func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, h.index, h.data("Campaigns"))
}

func (h *handler) serveCampaign(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !campaignIDRE.MatchString(id) {
		h.serveNotFound(w, r)
		return
	}
	d := h.data("Donate")
	d.CampaignID = id
	h.render(w, r, http.StatusOK, h.campaign, d)
}

func (h *handler) serveNotFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusNotFound, h.notFound, h.data("Page not found"))
}

// render executes t into a buffer first, so that a template error becomes a
// clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, d pageData) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", d); err != nil {
		slog.Error("web: rendering a page failed", "page", t.Name(), "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("X-Frame-Options", "DENY")
	// Pages are tiny and name their assets by content hash, so a browser
	// revalidates the page and caches everything else for good.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
}

func (h *handler) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, hashed := h.assets.lookup(r.PathValue("name"))
	if a == nil {
		h.serveNotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	if hashed {
		// The name changes whenever the content does.
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// asset is one embedded static file.
type asset struct {
	name        string // as embedded: "donate.js"
	hashedName  string // "donate.1a2b3c4d5e6f.js"
	contentType string
	etag        string
	body        []byte
}

// assets indexes the static files by plain and by hashed name.
type assets struct {
	byName   map[string]*asset
	byHashed map[string]*asset
}

// contentTypes lists every kind of file the assets may hold; another kind
// is an error at start, not a guess by the browser.
var contentTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
	".svg": "image/svg+xml",
}

func loadAssets(fsys fs.FS, dir string) (*assets, error) {
	as := &assets{byName: map[string]*asset{}, byHashed: map[string]*asset{}}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			return nil, fmt.Errorf("asset %s: subdirectories are not served", e.Name())
		}
		name := e.Name()
		ext := path.Ext(name)
		ct, ok := contentTypes[ext]
		if !ok {
			return nil, fmt.Errorf("asset %s: no content type for %q", name, ext)
		}
		body, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:6])
		a := &asset{
			name:        name,
			hashedName:  strings.TrimSuffix(name, ext) + "." + hash + ext,
			contentType: ct,
			etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
			body:        body,
		}
		as.byName[a.name] = a
		as.byHashed[a.hashedName] = a
	}
	return as, nil
}

// url is the template function asset: the cache-forever URL of a file.
func (as *assets) url(name string) (string, error) {
	a, ok := as.byName[name]
	if !ok {
		return "", fmt.Errorf("no asset %q", name)
	}
	return "/assets/" + a.hashedName, nil
}

// lookup finds a file by hashed or plain name.
func (as *assets) lookup(name string) (a *asset, hashed bool) {
	if a, ok := as.byHashed[name]; ok {
		return a, true
	}
	return as.byName[name], false
}
