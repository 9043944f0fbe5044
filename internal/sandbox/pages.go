package sandbox

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/floodgate/floodgate"
)

// serveSandbox serves the /_sandbox/ routes: pages and controls that are
// not part of Stripe's API, so never rate limited nor faulted.
func (s *Server) serveSandbox(w http.ResponseWriter, r *http.Request) {
	s.pagesOnce.Do(func() {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /_sandbox/ledger", s.serveLedger)
		mux.HandleFunc("GET /_sandbox/cards", s.serveCards)
		mux.HandleFunc("GET /_sandbox/config", s.serveConfig)
		mux.HandleFunc("POST /_sandbox/config", s.serveConfig)
		mux.HandleFunc("GET /_sandbox/3ds/{pi}", s.serveChallenge)
		mux.HandleFunc("POST /_sandbox/3ds/{pi}/{verdict}", s.serveVerdict)
		mux.HandleFunc("POST /_sandbox/payment_intents/{pi}/dispute", s.serveDispute)
		s.pages = mux
	})
	s.pages.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"rendering failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// serveLedger answers GET /_sandbox/ledger[?donation_id=...][&summary=true].
func (s *Server) serveLedger(w http.ResponseWriter, r *http.Request) {
	summary, _ := strconv.ParseBool(r.URL.Query().Get("summary"))
	writeJSON(w, http.StatusOK, s.ledger(r.URL.Query().Get("donation_id"), !summary))
}

// Card describes one of the test cards the sandbox knows, for pages
// that let a rehearsal pick one.
type Card struct {
	PaymentMethod string `json:"payment_method"`
	Token         string `json:"token"`
	Number        string `json:"number"`
	Brand         string `json:"brand"`
	Last4         string `json:"last4"`
	Funding       string `json:"funding"`
	Country       string `json:"country"`
	Fingerprint   string `json:"fingerprint"`
	// Outcome says what confirming with the card does, in words.
	Outcome string `json:"outcome"`
}

// Cards lists the test cards, in Stripe's documentation order.
func Cards() []Card {
	out := make([]Card, 0, len(testCards))
	for _, c := range testCards {
		outcome := "succeeds"
		switch {
		case c.outcome == decline:
			outcome = "declined: " + c.decline.code + " (" + c.decline.declineCode + ")"
		case c.outcome == authenticate && c.afterAuth != nil:
			outcome = "needs 3-D Secure, then declined: " + c.afterAuth.code + " (" + c.afterAuth.declineCode + ")"
		case c.outcome == authenticate:
			outcome = "needs 3-D Secure"
		case c.dispute:
			outcome = "succeeds, then disputed"
		}
		out = append(out, Card{PaymentMethod: "pm_card_" + c.name, Token: "tok_" + c.name, Number: c.number,
			Brand: c.brand, Last4: c.last4(), Funding: c.funding, Country: c.country, Fingerprint: c.fingerprint(), Outcome: outcome})
	}
	return out
}

// serveCards answers GET /_sandbox/cards with Cards.
func (s *Server) serveCards(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Cards())
}

// serveConfig shows the runtime config, and on POST changes the fields the
// JSON body names.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			errorResponse(errInvalid("", "", "The request body could not be read or is too large.")).write(w)
			return
		}
		cfg := s.Config()
		if err := json.Unmarshal(body, &cfg); err != nil {
			errorResponse(errInvalid("", "", fmt.Sprintf("Invalid config: %v", err))).write(w)
			return
		}
		if err := s.SetConfig(cfg); err != nil {
			errorResponse(errInvalid("", "", err.Error())).write(w)
			return
		}
	}
	writeJSON(w, http.StatusOK, s.Config())
}

// challengeFor finds the PaymentIntent a challenge request names and checks
// its client secret in constant time.
func (s *Server) challengeFor(r *http.Request) (*paymentIntent, *apiError) {
	id := r.PathValue("pi")
	secret := r.FormValue("client_secret")
	pi := s.pis[id]
	if pi == nil {
		return nil, errNoSuch(http.StatusNotFound, "payment_intent", id, "intent")
	}
	if secret == "" {
		return nil, errMissing("client_secret")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(pi.ClientSecret)) != 1 {
		return nil, errInvalid("client_secret", "", "The client_secret provided does not match the client_secret associated with the PaymentIntent.")
	}
	return pi, nil
}

type challengePage struct {
	ID, Secret, Amount, Status string
	Waiting                    bool
}

// serveChallenge renders the 3-D Secure page: the donor's bank, imitated.
func (s *Server) serveChallenge(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	pi, e := s.challengeFor(r)
	var page challengePage
	if e == nil {
		page = challengePage{ID: pi.ID, Secret: pi.ClientSecret, Amount: floodgate.FormatAmount(pi.Amount, pi.Currency),
			Status: pi.Status, Waiting: pi.Status == statusRequiresAction}
	}
	s.mu.Unlock()
	if e != nil {
		errorResponse(e).write(w)
		return
	}
	writeHTML(w, http.StatusOK, challengeTmpl, page)
}

// serveVerdict completes or fails the challenge.
func (s *Server) serveVerdict(w http.ResponseWriter, r *http.Request) {
	verdict := r.PathValue("verdict")
	if verdict != "complete" && verdict != "fail" {
		errorResponse(errUnrecognized(r.Method, r.URL.Path)).write(w)
		return
	}
	if err := r.ParseForm(); err != nil {
		errorResponse(errInvalid("", "", "The request body could not be read.")).write(w)
		return
	}
	s.mu.Lock()
	pi, e := s.challengeFor(r)
	var x *exec
	if e == nil {
		// The donor's bank decides, not an API request: the events
		// name no request, as Stripe's automatic events do.
		x = s.newExec(r, "", "")
		e = s.authenticated(x, pi, verdict == "complete")
	}
	var jerr error
	var body map[string]any
	var page challengePage
	var returnURL string
	if e == nil {
		jerr = s.commit(x)
	}
	if e == nil && jerr == nil {
		s.publish(x)
		body = s.renderPI(pi, x.base, expansion{})
		page = challengePage{ID: pi.ID, Amount: floodgate.FormatAmount(pi.Amount, pi.Currency), Status: pi.Status}
		if pi.ReturnURL != "" {
			returnURL = redirectURL(pi)
		}
	}
	s.mu.Unlock()
	switch {
	case e != nil:
		errorResponse(e).write(w)
	case jerr != nil:
		s.log.Error("sandbox journal write failed; the request changed nothing and is answered 500", "err", jerr)
		errorResponse(errJournal()).write(w)
	case !wantsHTML(r):
		writeJSON(w, http.StatusOK, body)
	case returnURL != "":
		http.Redirect(w, r, returnURL, http.StatusSeeOther)
	default:
		writeHTML(w, http.StatusOK, resultTmpl, page)
	}
}

// authenticated applies the donor's verdict to a PaymentIntent awaiting
// 3-D Secure: approval charges the card (which may still decline), failure
// returns it to requires_payment_method with
// payment_intent_authentication_failure, as Stripe does.
func (s *Server) authenticated(x *exec, pi *paymentIntent, ok bool) *apiError {
	if pi.Status != statusRequiresAction {
		return errUnexpectedState(fmt.Sprintf("This PaymentIntent does not await authentication; its status is %s.", pi.Status), s.renderPI(pi, x.base, expansion{}))
	}
	pm := s.lookupPM(pi.PaymentMethod, x.now)
	if pm == nil {
		return errInternal("The PaymentIntent's payment method is gone.")
	}
	x.savePI(pi)
	pi.ActionSource = ""
	switch {
	case !ok:
		pi.Status, pi.PaymentMethod = statusRequiresPaymentMethod, ""
		pi.LastError = &lastError{Type: typeInvalidRequest, Code: "payment_intent_authentication_failure",
			Message:       "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
			PaymentMethod: pm.ID}
		x.emit("payment_intent.payment_failed", s.renderPI(pi, x.base, expansion{}))
	case pm.card().afterAuth != nil:
		s.decline(x, pi, pm, *pm.card().afterAuth, expansion{})
	default:
		s.succeed(x, pi, pm)
	}
	return nil
}

// redirectURL is where Stripe sends the browser after a redirect-based
// authentication.
func redirectURL(pi *paymentIntent) string {
	u, err := url.Parse(pi.ReturnURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("payment_intent", pi.ID)
	q.Set("payment_intent_client_secret", pi.ClientSecret)
	status := "failed"
	if pi.Status == statusSucceeded {
		status = "succeeded"
	}
	q.Set("redirect_status", status)
	u.RawQuery = q.Encode()
	return u.String()
}

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// serveDispute opens a dispute on a succeeded PaymentIntent (form values
// reason, default fraudulent, and amount, default the whole charge).
func (s *Server) serveDispute(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		errorResponse(errInvalid("", "", "The request body could not be read.")).write(w)
		return
	}
	reason := r.FormValue("reason")
	if reason == "" {
		reason = "fraudulent"
	}
	var amount int64
	if v := r.FormValue("amount"); v != "" {
		n, e := parseInt("amount", v)
		if e != nil {
			errorResponse(e).write(w)
			return
		}
		amount = n
	}
	s.mu.Lock()
	id := r.PathValue("pi")
	pi := s.pis[id]
	var e *apiError
	var body map[string]any
	var jerr error
	switch {
	case pi == nil:
		e = errNoSuch(http.StatusNotFound, "payment_intent", id, "intent")
	case pi.Status != statusSucceeded:
		e = errInvalid("", "", fmt.Sprintf("Only a succeeded PaymentIntent can be disputed; %s is %s.", pi.ID, pi.Status))
	case pi.Dispute != nil:
		e = errInvalid("", "", fmt.Sprintf("The charge of %s is already disputed.", pi.ID))
	case amount < 0 || amount > pi.Amount:
		e = errInvalid("amount", "", "The disputed amount must be between 1 and the charge's amount.")
	default:
		if amount == 0 {
			amount = pi.Amount
		}
		// A dispute comes from the card network, not from an API
		// request: its event names no request, as Stripe's does.
		x := s.newExec(r, "", "")
		s.openDispute(x, pi, reason, amount)
		if jerr = s.commit(x); jerr == nil {
			s.publish(x)
			body = s.renderDispute(pi)
		}
	}
	s.mu.Unlock()
	switch {
	case e != nil:
		errorResponse(e).write(w)
	case jerr != nil:
		s.log.Error("sandbox journal write failed; the request changed nothing and is answered 500", "err", jerr)
		errorResponse(errJournal()).write(w)
	default:
		writeJSON(w, http.StatusOK, body)
	}
}

func writeHTML(w http.ResponseWriter, status int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self' http: https:")
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		_, _ = io.WriteString(w, "rendering failed")
	}
}

// The pages are self-contained: no file from anywhere else.
const pageStyle = `<style>
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#f4f5f7;color:#1d2330}
main{background:#fff;border-radius:12px;padding:2rem 2.25rem;max-width:24rem;width:100%;box-shadow:0 4px 24px rgba(20,30,50,.12)}
h1{font-size:1.25rem;margin:0 0 .5rem}
.note{color:#5b6475;font-size:.9rem}
.amount{font-size:1.75rem;font-weight:600;margin:1rem 0 .25rem}
.id{font-family:ui-monospace,monospace;font-size:.8rem;color:#5b6475;word-break:break-all}
.buttons{display:flex;gap:.75rem;margin-top:1.5rem}
form{flex:1;margin:0}
button{width:100%;font:inherit;font-weight:600;padding:.75rem;border:0;border-radius:8px;cursor:pointer}
.ok{background:#1a7f4b;color:#fff}.fail{background:#e8eaef;color:#8a1c1c}
</style>`

var challengeTmpl = template.Must(template.New("challenge").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>3-D Secure test challenge</title>` + pageStyle + `</head><body><main>
<h1>Authenticate this payment</h1>
<p class="note">A test page of the floodgate sandbox standing in for the card issuer. No bank is involved and no money moves.</p>
<p class="amount">{{.Amount}}</p>
<p class="id">{{.ID}}</p>
{{if .Waiting}}<div class="buttons">
<form method="post" action="{{.ID}}/complete"><input type="hidden" name="client_secret" value="{{.Secret}}"><button class="ok" type="submit">Complete</button></form>
<form method="post" action="{{.ID}}/fail"><input type="hidden" name="client_secret" value="{{.Secret}}"><button class="fail" type="submit">Fail</button></form>
</div>{{else}}<p>This payment does not await authentication (status: {{.Status}}).</p>{{end}}
</main></body></html>
`))

var resultTmpl = template.Must(template.New("result").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>3-D Secure test challenge</title>` + pageStyle + `</head><body><main>
<h1>{{if eq .Status "succeeded"}}Authentication complete{{else}}Authentication finished{{end}}</h1>
<p class="amount">{{.Amount}}</p>
<p class="id">{{.ID}}: {{.Status}}</p>
<p class="note">You can close this window.</p>
</main>
<script>
(function () {
  var m = {type: "floodgate-sandbox-3ds", payment_intent: {{.ID}}, status: {{.Status}}};
  try { if (window.opener) window.opener.postMessage(m, "*"); } catch (e) {}
  try { if (window.parent !== window) window.parent.postMessage(m, "*"); } catch (e) {}
})();
</script>
</body></html>
`))
