package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// get serves one request and returns the response with its body read.
func get(tb testing.TB, h http.Handler, target string, header ...string) (*http.Response, string) {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res, string(b)
}

// checkPageHeaders checks what every HTML answer must carry.
func checkPageHeaders(tb testing.TB, res *http.Response, payments string) {
	tb.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		tb.Errorf("Content-Type = %q, want text/html", ct)
	}
	if v := res.Header.Get("X-Content-Type-Options"); v != "nosniff" {
		tb.Errorf("X-Content-Type-Options = %q", v)
	}
	if v := res.Header.Get("Referrer-Policy"); v != "same-origin" {
		tb.Errorf("Referrer-Policy = %q", v)
	}
	checkCSP(tb, res.Header.Get("Content-Security-Policy"), payments)
}

// checkCSP checks that the policy allows the page's own origin only, plus
// js.stripe.com for scripts and frames in stripe mode.
func checkCSP(tb testing.TB, csp, payments string) {
	tb.Helper()
	if csp == "" {
		tb.Fatal("no Content-Security-Policy")
	}
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	if directives["default-src"] != "'self'" {
		tb.Errorf("default-src = %q, want 'self'", directives["default-src"])
	}
	for _, name := range []string{"script-src", "frame-src"} {
		want := "'self'"
		if payments == PaymentsStripe {
			want = "'self' https://js.stripe.com"
		}
		if directives[name] != want {
			tb.Errorf("%s = %q, want %q", name, directives[name], want)
		}
	}
	if directives["object-src"] != "'none'" || directives["frame-ancestors"] != "'none'" {
		tb.Errorf("policy %q should forbid plugins and framing", csp)
	}
	// No directive may name any other host.
	rest := strings.ReplaceAll(csp, "https://js.stripe.com", "")
	if payments != PaymentsStripe {
		rest = csp
	}
	if strings.Contains(rest, "http") || strings.Contains(rest, "*") || strings.Contains(rest, "'unsafe") {
		tb.Errorf("policy %q allows more than it should", csp)
	}
}

func TestPages(t *testing.T) {
	tests := []struct {
		payments string
		path     string
		status   int
		contains []string
		excludes []string
	}{
		{PaymentsSandbox, "/", 200, []string{"Open campaigns", `data-payments="sandbox"`}, []string{"data-campaign"}},
		{PaymentsStripe, "/", 200, []string{"Open campaigns", `data-payments="stripe"`}, nil},
		{PaymentsSandbox, "/c/demo", 200,
			[]string{`data-campaign="demo"`, `data-payments="sandbox"`, `data-text-version="2026-01"`,
				`value="pm_card_visa"`, `value="pm_card_mastercard"`, `value="pm_card_chargeDeclined"`,
				`value="pm_card_chargeDeclinedInsufficientFunds"`, `value="pm_card_authenticationRequired"`,
				"Visa — succeeds", `<label for="email">`, `<label for="amount">`, "Gift Aid declaration",
				`id="submit" class="primary" disabled`},
			[]string{"configured later", "not set up on this page"}},
		{PaymentsStripe, "/c/demo", 200,
			[]string{`data-campaign="demo"`, `data-payments="stripe"`, "Stripe.js is not set up on this page yet",
				`id="submit" class="primary" disabled`},
			[]string{"pm_card_", "Test mode", "js.stripe.com"}},
		{PaymentsSandbox, "/c/a-0-z-9", 200, []string{`data-campaign="a-0-z-9"`}, nil},
		{PaymentsSandbox, "/c/" + strings.Repeat("a", 64), 200, nil, nil},
		{PaymentsSandbox, "/nope", 404, []string{"Page not found"}, nil},
		{PaymentsStripe, "/nope", 404, []string{"Page not found"}, nil},
		{PaymentsSandbox, "/c/", 404, nil, nil},
		{PaymentsSandbox, "/c/Demo", 404, nil, nil},
		{PaymentsSandbox, "/c/demo/", 404, nil, nil},
		{PaymentsSandbox, "/c/demo/extra", 404, nil, nil},
		{PaymentsSandbox, "/c/demo_1", 404, nil, nil},
		{PaymentsSandbox, "/c/" + strings.Repeat("a", 65), 404, nil, nil},
		{PaymentsSandbox, "/c/%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, nil, []string{"alert(1)"}},
		{PaymentsSandbox, "/assets/", 404, nil, nil},
		{PaymentsSandbox, "/assets/nope.js", 404, nil, nil},
		{PaymentsSandbox, "/assets/donate.000000000000.js", 404, nil, nil},
		{PaymentsSandbox, "/v1/anything", 404, nil, nil},
		{PaymentsSandbox, "/index.html", 404, nil, nil},
	}
	handlers := map[string]http.Handler{
		PaymentsSandbox: New(Options{Payments: PaymentsSandbox}),
		PaymentsStripe:  New(Options{Payments: PaymentsStripe}),
	}
	for _, tt := range tests {
		t.Run(tt.payments+" "+tt.path, func(t *testing.T) {
			res, body := get(t, handlers[tt.payments], tt.path)
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.status)
			}
			checkPageHeaders(t, res, tt.payments)
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
			for _, s := range tt.excludes {
				if strings.Contains(body, s) {
					t.Errorf("body has %q", s)
				}
			}
		})
	}
}

func TestEmptyPaymentsIsSandbox(t *testing.T) {
	res, body := get(t, New(Options{}), "/c/demo")
	checkPageHeaders(t, res, PaymentsSandbox)
	if !strings.Contains(body, `data-payments="sandbox"`) {
		t.Error("an empty Payments should mean sandbox")
	}
}

func TestUnknownPaymentsPanics(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "sandbox, stripe") {
			t.Errorf("recover() = %v, want a panic listing the valid modes", v)
		}
	}()
	New(Options{Payments: "paypal"})
}

func TestHEAD(t *testing.T) {
	h := New(Options{})
	req := httptest.NewRequest(http.MethodHead, "/c/demo", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestOtherMethods(t *testing.T) {
	h := New(Options{})
	for _, target := range []string{"/", "/c/demo", "/nope"} {
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader("x"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d", target, rec.Code)
		}
	}
}

// TestHostileCampaignID renders the donation page with an id the handler
// itself would refuse, to prove that html/template escapes it anyway.
func TestHostileCampaignID(t *testing.T) {
	const hostile = `"><script>alert(1)</script><x a='`
	h := New(Options{}).(*handler)
	d := h.data("Donate")
	d.CampaignID = hostile
	rec := httptest.NewRecorder()
	h.render(rec, httptest.NewRequest(http.MethodGet, "/c/x", nil), 200, h.campaign, d)
	body := rec.Body.String()
	if strings.Contains(body, "<script>alert") || strings.Contains(body, `"><script>`) {
		t.Fatalf("the hostile id reached the page unescaped:\n%s", body)
	}
	if !strings.Contains(body, `data-campaign="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;x a=&#39;"`) {
		t.Errorf("the id is not in the page, escaped as an attribute:\n%s", body)
	}

	// And the handler does not render such an id at all.
	for _, target := range []string{"/c/%22%3E%3Cscript%3E", `/c/"><script>`, "/c/%3Cb%3E"} {
		res, body := get(t, h, target)
		if res.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", target, res.StatusCode)
		}
		if strings.Contains(body, "<script>\n") || strings.Contains(body, `"><script>`) || strings.Contains(body, "<b>") {
			t.Errorf("GET %s reflected the id", target)
		}
	}
}

func TestAssets(t *testing.T) {
	h := New(Options{}).(*handler)
	want := map[string]string{
		"style.css":   "text/css; charset=utf-8",
		"api.js":      "text/javascript; charset=utf-8",
		"index.js":    "text/javascript; charset=utf-8",
		"donate.js":   "text/javascript; charset=utf-8",
		"favicon.svg": "image/svg+xml",
	}
	if len(h.assets.byName) != len(want) {
		t.Errorf("%d assets embedded, the test knows %d", len(h.assets.byName), len(want))
	}
	for name, ct := range want {
		a := h.assets.byName[name]
		if a == nil {
			t.Errorf("asset %s missing", name)
			continue
		}
		hashed, err := h.assets.url(name)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^/assets/[a-z]+\.[0-9a-f]{12}\.[a-z]+$`).MatchString(hashed) {
			t.Errorf("hashed URL %q", hashed)
		}
		for _, tc := range []struct{ path, cache string }{
			{hashed, "public, max-age=31536000, immutable"},
			{"/assets/" + name, "no-cache"},
		} {
			res, body := get(t, h, tc.path)
			if res.StatusCode != 200 {
				t.Errorf("GET %s = %d", tc.path, res.StatusCode)
				continue
			}
			if got := res.Header.Get("Content-Type"); got != ct {
				t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, ct)
			}
			if got := res.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", tc.path)
			}
			checkCSP(t, res.Header.Get("Content-Security-Policy"), PaymentsSandbox)
			if body != string(a.body) {
				t.Errorf("GET %s: wrong body", tc.path)
			}
			etag := res.Header.Get("ETag")
			if etag == "" {
				t.Errorf("GET %s: no ETag", tc.path)
				continue
			}
			res, _ = get(t, h, tc.path, "If-None-Match", etag)
			if res.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s with its ETag = %d, want 304", tc.path, res.StatusCode)
			}
		}
	}
}

// TestPagesReferenceServedAssets follows every local URL a page names.
func TestPagesReferenceServedAssets(t *testing.T) {
	h := New(Options{})
	ref := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)
	for _, page := range []string{"/", "/c/demo", "/nope"} {
		_, body := get(t, h, page)
		found := 0
		for _, m := range ref.FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(m[1], "/assets/") {
				continue
			}
			found++
			if res, _ := get(t, h, m[1]); res.StatusCode != 200 {
				t.Errorf("%s names %s, which answers %d", page, m[1], res.StatusCode)
			}
		}
		if found < 3 {
			t.Errorf("%s names only %d assets", page, found)
		}
	}
}

// foreignURL finds absolute and protocol-relative URLs in text.
var foreignURL = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<>)]*|url\(\s*['"]?(?:https?:)?//|@import`)

// allowedURL says whether a URL found in an embedded file may stay: the SVG
// namespace is a name, never fetched; Stripe.js may appear only in a
// template, where the policy admits it in stripe mode alone.
func allowedURL(file, u string) bool {
	switch {
	case u == "http://www.w3.org/2000/svg" && strings.HasSuffix(file, ".svg"):
		return true
	case strings.HasPrefix(u, "https://js.stripe.com/") && strings.HasPrefix(file, "templates/"):
		return true
	}
	return false
}

// TestNoFileFromAnotherHost walks every embedded file, and every page as
// served in both modes, and fails on any URL of another host.
func TestNoFileFromAnotherHost(t *testing.T) {
	walked := 0
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		walked++
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		for _, u := range foreignURL.FindAllString(string(b), -1) {
			if !allowedURL(p, u) {
				t.Errorf("%s references %q, another host", p, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if walked < 8 {
		t.Fatalf("walked only %d embedded files", walked)
	}
	for _, payments := range []string{PaymentsSandbox, PaymentsStripe} {
		h := New(Options{Payments: payments})
		for _, page := range []string{"/", "/c/demo", "/nope"} {
			_, body := get(t, h, page)
			for _, u := range foreignURL.FindAllString(body, -1) {
				if payments == PaymentsStripe && strings.HasPrefix(u, "https://js.stripe.com/") {
					continue
				}
				t.Errorf("%s %s references %q, another host", payments, page, u)
			}
		}
	}
}

// TestTemplatesFitPolicy checks the markup for what the policy would block
// silently in a browser: inline script, inline handlers, style attributes.
func TestTemplatesFitPolicy(t *testing.T) {
	h := New(Options{})
	scriptTag := regexp.MustCompile(`<script\b[^>]*>`)
	for _, page := range []string{"/", "/c/demo", "/nope"} {
		_, body := get(t, h, page)
		for _, tag := range scriptTag.FindAllString(body, -1) {
			if !strings.Contains(tag, ` src="/assets/`) {
				t.Errorf("%s: inline or foreign script %q", page, tag)
			}
		}
		if strings.Count(body, "<script") != strings.Count(body, "></script>") {
			t.Errorf("%s: a script element has a body", page)
		}
		if m := regexp.MustCompile(`\s(?:on[a-z]+|style)=`).FindString(body); m != "" {
			t.Errorf("%s: attribute %q is blocked by the policy", page, m)
		}
		if strings.Contains(body, "javascript:") {
			t.Errorf("%s: a javascript: URL", page)
		}
	}
}

// TestScriptsUseTextContent keeps server data out of the HTML parser.
func TestScriptsUseTextContent(t *testing.T) {
	banned := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function`)
	entries, err := fs.ReadDir(files, "static")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		b, _ := fs.ReadFile(files, "static/"+e.Name())
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			if m := banned.FindString(line); m != "" {
				t.Errorf("%s:%d uses %s", e.Name(), i+1, m)
			}
		}
	}
}

// TestScripts runs testdata/api_test.js, the unit tests of the scripts
// pure functions (money parsing above all), under Node when there is one.
func TestScripts(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed; the script tests need it")
	}
	cmd := exec.Command(node, "testdata/api_test.js")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
