package sandbox

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/floodgate/floodgate"
)

// handler validates a request's parameters without touching state (a
// failure is a 400 that Stripe never stores under an idempotency key) and
// returns the work to execute under Server.mu.
type handler func(f *form, id string) (func(*exec) *response, *apiError)

// endpoint is one named API operation; Stripe rate-limits each separately.
type endpoint struct {
	method  string
	pattern string
	name    string
	handle  handler
	// publishable endpoints also take a publishable test key.
	publishable bool
}

var endpoints = []*endpoint{
	{method: http.MethodPost, pattern: "/v1/payment_intents", handle: createPI},
	{method: http.MethodGet, pattern: "/v1/payment_intents", handle: listPIs},
	{method: http.MethodGet, pattern: "/v1/payment_intents/{id}", handle: retrievePI},
	{method: http.MethodPost, pattern: "/v1/payment_intents/{id}/confirm", handle: confirmPI},
	{method: http.MethodPost, pattern: "/v1/payment_intents/{id}/cancel", handle: cancelPI},
	{method: http.MethodPost, pattern: "/v1/payment_methods", handle: createPM, publishable: true},
	{method: http.MethodGet, pattern: "/v1/payment_methods/{id}", handle: retrievePM},
	{method: http.MethodPost, pattern: "/v1/refunds", handle: createRefund},
	{method: http.MethodGet, pattern: "/v1/refunds/{id}", handle: retrieveRefund},
	{method: http.MethodGet, pattern: "/v1/events", handle: listEvents},
	{method: http.MethodGet, pattern: "/v1/events/{id}", handle: retrieveEvent},
}

func init() {
	for _, ep := range endpoints {
		ep.name = ep.method + " " + ep.pattern
	}
}

// route finds the endpoint for a request and the id in its path.
func route(method, path string) (*endpoint, string) {
	segs := strings.Split(strings.TrimSuffix(path, "/"), "/")
	for _, ep := range endpoints {
		if ep.method != method {
			continue
		}
		pat := strings.Split(ep.pattern, "/")
		if len(pat) != len(segs) {
			continue
		}
		id, ok := "", true
		for i, p := range pat {
			switch {
			case p == "{id}" && segs[i] != "":
				id = segs[i]
			case p != segs[i]:
				ok = false
			}
		}
		if ok {
			return ep, id
		}
	}
	return nil, ""
}

// Stripe's bounds on metadata and amounts.
const (
	maxMetadataKeys  = 50
	maxMetadataKey   = 40
	maxMetadataValue = 500
	maxAmount        = 99_999_999
)

func parseMetadata(f *form) (map[string]string, *apiError) {
	h, _, e := f.hash("metadata")
	if e != nil {
		return nil, e
	}
	if len(h) > maxMetadataKeys {
		return nil, errInvalid("metadata", "", fmt.Sprintf("You can only specify up to %d metadata keys.", maxMetadataKeys))
	}
	out := map[string]string{}
	for k, v := range h {
		if len(k) > maxMetadataKey {
			return nil, errInvalid("metadata", "", fmt.Sprintf("Metadata keys can have up to %d characters, but you passed in a key that is %d characters.", maxMetadataKey, len(k)))
		}
		if len(v) > maxMetadataValue {
			return nil, errInvalid("metadata", "", fmt.Sprintf("Metadata values can have up to %d characters, but you passed in a value that is %d characters.", maxMetadataValue, len(v)))
		}
		if v != "" { // An empty value unsets a key in Stripe.
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// parseExpand reads expand[]; prefix is "data." for lists.
func parseExpand(f *form, prefix string) (expansion, *apiError) {
	var ex expansion
	list, _, e := f.list("expand")
	if e != nil {
		return ex, e
	}
	for _, v := range list {
		switch v {
		case prefix + "payment_method":
			ex.paymentMethod = true
		case prefix + "latest_charge":
			ex.latestCharge = true
		default:
			return ex, errInvalid("expand", "", fmt.Sprintf("This property cannot be expanded (%s).", v))
		}
	}
	return ex, nil
}

type createParams struct {
	amount        int64
	currency      string
	paymentMethod string
	confirm       bool
	apm           string
	description   string
	metadata      map[string]string
	returnURL     string
	expand        expansion
}

func createPI(f *form, _ string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("amount", "currency", "payment_method", "confirm", "payment_method_types",
		"automatic_payment_methods", "metadata", "description", "capture_method", "return_url", "expand",
		"receipt_email"); e != nil {
		return nil, e
	}
	var p createParams
	amount, ok, e := f.scalar("amount")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, errMissing("amount")
	}
	if p.amount, e = parseInt("amount", amount); e != nil {
		return nil, e
	}
	cur, ok, e := f.scalar("currency")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, errMissing("currency")
	}
	p.currency = strings.ToLower(cur)
	info, known := floodgate.LookupCurrency(p.currency)
	if !known {
		return nil, errInvalid("currency", "", fmt.Sprintf("Invalid currency: %s. The sandbox supports these currencies: %s", p.currency, strings.Join(floodgate.Currencies(), ", ")))
	}
	if p.amount < info.MinCharge {
		return nil, errInvalid("amount", "amount_too_small", fmt.Sprintf("Amount must be at least %s", floodgate.FormatAmount(info.MinCharge, p.currency)))
	}
	if p.amount > maxAmount {
		return nil, errInvalid("amount", "amount_too_large", fmt.Sprintf("Amount must be no more than %s", floodgate.FormatAmount(maxAmount, p.currency)))
	}
	if p.paymentMethod, _, e = f.scalar("payment_method"); e != nil {
		return nil, e
	}
	if s, ok, e := f.scalar("confirm"); e != nil {
		return nil, e
	} else if ok {
		if p.confirm, e = parseBool("confirm", s); e != nil {
			return nil, e
		}
	}
	types, hasTypes, e := f.list("payment_method_types")
	if e != nil {
		return nil, e
	}
	apm, hasAPM, e := f.hash("automatic_payment_methods")
	if e != nil {
		return nil, e
	}
	if hasTypes && hasAPM {
		return nil, errExclusive("automatic_payment_methods", "automatic_payment_methods", "payment_method_types")
	}
	for _, t := range types {
		if t != "card" {
			return nil, errInvalid("payment_method_types", "payment_intent_invalid_parameter", fmt.Sprintf("The payment method type %q is invalid or not supported by the sandbox, which knows only card.", t))
		}
	}
	if !hasTypes {
		// Since API version 2023-08-16, a PaymentIntent with neither
		// parameter uses automatic payment methods, redirects allowed.
		p.apm = "always"
		if hasAPM {
			if e := checkKeys("automatic_payment_methods", apm, "enabled", "allow_redirects"); e != nil {
				return nil, e
			}
			enabled, e := parseBool("automatic_payment_methods[enabled]", apm["enabled"])
			if e != nil {
				return nil, e
			}
			switch r := apm["allow_redirects"]; {
			case !enabled:
				p.apm = ""
			case r == "never" || r == "always":
				p.apm = r
			case r != "":
				return nil, errInvalid("automatic_payment_methods[allow_redirects]", "", fmt.Sprintf("Invalid automatic_payment_methods[allow_redirects]: must be one of always or never, not %s.", r))
			}
		}
	}
	if p.description, _, e = f.scalar("description"); e != nil {
		return nil, e
	}
	if p.metadata, e = parseMetadata(f); e != nil {
		return nil, e
	}
	if cm, ok, e := f.scalar("capture_method"); e != nil {
		return nil, e
	} else if ok && cm != "automatic" && cm != "automatic_async" {
		return nil, errInvalid("capture_method", "", fmt.Sprintf("The sandbox supports only capture_method=automatic, not %s.", cm))
	}
	if p.returnURL, _, e = f.scalar("return_url"); e != nil {
		return nil, e
	}
	if p.expand, e = parseExpand(f, ""); e != nil {
		return nil, e
	}
	if p.confirm && p.paymentMethod == "" {
		return nil, errInvalid("payment_method", "parameter_missing", "You cannot confirm this PaymentIntent because it's missing a payment method. Provide payment_method when confirm=true.")
	}
	if p.confirm && p.apm == "always" && p.returnURL == "" {
		return nil, errRedirectNeedsReturnURL()
	}
	return func(x *exec) *response { return x.s.createPI(x, p) }, nil
}

func errRedirectNeedsReturnURL() *apiError {
	return errInvalid("return_url", "", "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some of these payment methods might redirect your customer off of your page, you must provide a `return_url`. If you don't want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents.")
}

func (s *Server) createPI(x *exec, p createParams) *response {
	if len(s.pis) >= s.opts.MaxPaymentIntents {
		return errorResponse(errInvalid("", "", fmt.Sprintf("The sandbox holds its maximum of %d PaymentIntents; start a new sandbox or raise the bound.", s.opts.MaxPaymentIntents)))
	}
	var pm *paymentMethod
	if p.paymentMethod != "" {
		if pm = s.lookupPM(p.paymentMethod, x.now); pm == nil {
			return errorResponse(errNoSuch(http.StatusBadRequest, "PaymentMethod", p.paymentMethod, "payment_method"))
		}
		if e := reused(pm, ""); e != nil {
			return errorResponse(e)
		}
	}
	s.seq++
	id := newID("pi_", 24)
	pi := &paymentIntent{
		Seq: s.seq, ID: id, ClientSecret: id + "_secret_" + newID("", 25),
		Amount: p.amount, Currency: p.currency, Status: statusRequiresPaymentMethod,
		Created: x.now.Unix(), Description: p.description, Metadata: p.metadata,
		Types: []string{"card"}, APM: p.apm, CaptureMethod: "automatic", ReturnURL: p.returnURL,
	}
	if pm != nil {
		pi.Status, pi.PaymentMethod = statusRequiresConfirmation, pm.ID
	}
	s.insertPI(pi)
	x.createdPI(pi)
	x.emit("payment_intent.created", s.renderPI(pi, x.base, expansion{}))
	if p.confirm {
		return s.confirm(x, pi, pm, p.expand)
	}
	return jsonResponse(http.StatusOK, s.renderPI(pi, x.base, p.expand))
}

// reused is Stripe's refusal of a PaymentMethod that an earlier
// PaymentIntent already used without a Customer.
func reused(pm *paymentMethod, piID string) *apiError {
	if pm.magic || pm.UsedBy == "" || pm.UsedBy == piID {
		return nil
	}
	return errInvalid("", "", "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, shared with a connected account without Customer attachment, or was detached from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer first.")
}

// comparePI orders PaymentIntents by creation, the sequence breaking ties
// (it is unique, so two PaymentIntents are never equal).
func comparePI(a, b *paymentIntent) int {
	return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.Seq, b.Seq))
}

// before reports whether a comes before b in the list order.
func before(a, b *paymentIntent) bool { return comparePI(a, b) < 0 }

func (s *Server) insertPI(pi *paymentIntent) {
	s.pis[pi.ID] = pi
	n := len(s.order)
	if n == 0 || before(s.order[n-1], pi) {
		s.order = append(s.order, pi)
		return
	}
	i := sort.Search(n, func(i int) bool { return before(pi, s.order[i]) })
	s.order = append(s.order, nil)
	copy(s.order[i+1:], s.order[i:])
	s.order[i] = pi
}

// confirm attempts the charge with pm, as Stripe's confirmation does.
func (s *Server) confirm(x *exec, pi *paymentIntent, pm *paymentMethod, ex expansion) *response {
	c := pm.card()
	x.savePI(pi)
	pi.Attempts++
	pi.LastError, pi.ActionSource = nil, ""
	pi.LastPM, pi.Fingerprint = pm.ID, c.fingerprint()
	if !pm.magic && pm.UsedBy == "" {
		x.savePM(pm)
		pm.UsedBy = pi.ID
	}
	switch c.outcome {
	case authenticate:
		pi.Status, pi.PaymentMethod = statusRequiresAction, pm.ID
		pi.ActionSource = newID("src_", 24)
		x.emit("payment_intent.requires_action", s.renderPI(pi, x.base, expansion{}))
		return jsonResponse(http.StatusOK, s.renderPI(pi, x.base, ex))
	case decline:
		return s.decline(x, pi, pm, c.decline, ex)
	}
	s.succeed(x, pi, pm)
	return jsonResponse(http.StatusOK, s.renderPI(pi, x.base, ex))
}

func (s *Server) newCharge(x *exec, pi *paymentIntent, pm *paymentMethod, status string) *charge {
	ch := &charge{ID: newID("ch_", 24), Status: status, Amount: pi.Amount, Created: x.now.Unix(),
		PaymentMethod: pm.ID, Card: pm.Card, ExpMonth: pm.ExpMonth, ExpYear: pm.ExpYear}
	pi.Charge = ch
	s.charges[ch.ID] = pi
	return ch
}

func (s *Server) succeed(x *exec, pi *paymentIntent, pm *paymentMethod) {
	s.newCharge(x, pi, pm, statusSucceeded)
	pi.Status, pi.PaymentMethod, pi.AmountReceived = statusSucceeded, pm.ID, pi.Amount
	x.emit("payment_intent.succeeded", s.renderPI(pi, x.base, expansion{}))
	if pm.card().dispute {
		s.openDispute(x, pi, "fraudulent", pi.Amount)
	}
}

// decline fails the attempt: the PaymentIntent returns to
// requires_payment_method with last_payment_error, and the answer is a 402
// card_error carrying it.
func (s *Server) decline(x *exec, pi *paymentIntent, pm *paymentMethod, d declineInfo, ex expansion) *response {
	ch := s.newCharge(x, pi, pm, "failed")
	ch.FailureCode, ch.FailureMessage = d.code, d.message
	pi.Status, pi.PaymentMethod = statusRequiresPaymentMethod, ""
	pi.LastError = &lastError{Type: typeCard, Code: d.code, DeclineCode: d.declineCode, Message: d.message,
		Param: d.param, Charge: ch.ID, PaymentMethod: pm.ID}
	x.emit("payment_intent.payment_failed", s.renderPI(pi, x.base, expansion{}))
	e := d.declineError()
	e.Charge = ch.ID
	e.PaymentIntent = s.renderPI(pi, x.base, ex)
	e.PaymentMethod = s.renderPM(pm)
	return errorResponse(e)
}

func (s *Server) openDispute(x *exec, pi *paymentIntent, reason string, amount int64) {
	x.savePI(pi)
	pi.Dispute = &dispute{ID: newID("dp_", 24), Amount: amount, Reason: reason, Created: x.now.Unix()}
	pi.Charge.Disputed = true
	x.emit("charge.dispute.created", s.renderDispute(pi))
}

func retrievePI(f *form, id string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("expand", "client_secret"); e != nil {
		return nil, e
	}
	ex, e := parseExpand(f, "")
	if e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		pi := x.s.pis[id]
		if pi == nil {
			return errorResponse(errNoSuch(http.StatusNotFound, "payment_intent", id, "intent"))
		}
		return jsonResponse(http.StatusOK, x.s.renderPI(pi, x.base, ex))
	}, nil
}

func confirmPI(f *form, id string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("payment_method", "return_url", "expand", "receipt_email"); e != nil {
		return nil, e
	}
	pmID, _, e := f.scalar("payment_method")
	if e != nil {
		return nil, e
	}
	returnURL, _, e := f.scalar("return_url")
	if e != nil {
		return nil, e
	}
	ex, e := parseExpand(f, "")
	if e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		s := x.s
		pi := s.pis[id]
		if pi == nil {
			return errorResponse(errNoSuch(http.StatusNotFound, "payment_intent", id, "intent"))
		}
		switch pi.Status {
		case statusRequiresPaymentMethod, statusRequiresConfirmation, statusRequiresAction:
		case statusSucceeded:
			return errorResponse(errUnexpectedState("You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.", s.renderPI(pi, x.base, ex)))
		default:
			return errorResponse(errUnexpectedState(fmt.Sprintf("You cannot confirm this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, requires_payment_method, requires_action.", pi.Status), s.renderPI(pi, x.base, ex)))
		}
		if pmID == "" {
			pmID = pi.PaymentMethod
		}
		if pmID == "" {
			e := errUnexpectedState("You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.", s.renderPI(pi, x.base, ex))
			e.Param = "payment_method"
			return errorResponse(e)
		}
		pm := s.lookupPM(pmID, x.now)
		if pm == nil {
			return errorResponse(errNoSuch(http.StatusBadRequest, "PaymentMethod", pmID, "payment_method"))
		}
		if e := reused(pm, pi.ID); e != nil {
			return errorResponse(e)
		}
		if returnURL != "" {
			x.savePI(pi)
			pi.ReturnURL = returnURL
		}
		if pi.APM == "always" && pi.ReturnURL == "" {
			return errorResponse(errRedirectNeedsReturnURL())
		}
		return s.confirm(x, pi, pm, ex)
	}, nil
}

func cancelPI(f *form, id string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("cancellation_reason", "expand"); e != nil {
		return nil, e
	}
	reason, _, e := f.scalar("cancellation_reason")
	if e != nil {
		return nil, e
	}
	switch reason {
	case "", "duplicate", "fraudulent", "requested_by_customer", "abandoned":
	default:
		return nil, errInvalid("cancellation_reason", "", fmt.Sprintf("Invalid cancellation_reason: must be one of duplicate, fraudulent, requested_by_customer or abandoned, not %s.", reason))
	}
	ex, e := parseExpand(f, "")
	if e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		s := x.s
		pi := s.pis[id]
		if pi == nil {
			return errorResponse(errNoSuch(http.StatusNotFound, "payment_intent", id, "intent"))
		}
		switch pi.Status {
		case statusRequiresPaymentMethod, statusRequiresConfirmation, statusRequiresAction, statusRequiresCapture:
		default:
			return errorResponse(errUnexpectedState(fmt.Sprintf("You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.", pi.Status), s.renderPI(pi, x.base, ex)))
		}
		x.savePI(pi)
		pi.Status, pi.CanceledAt, pi.CancellationReason, pi.ActionSource = statusCanceled, x.now.Unix(), reason, ""
		x.emit("payment_intent.canceled", s.renderPI(pi, x.base, expansion{}))
		return jsonResponse(http.StatusOK, s.renderPI(pi, x.base, ex))
	}, nil
}

// Stripe's list bounds.
const (
	defaultListLimit = 10
	maxListLimit     = 100
)

// listQuery is what every list request asks: a creation range (both ends
// included), a page size, and a cursor.
type listQuery struct {
	lo, hi int64
	limit  int
	// cursor is the object of starting_after, or of ending_before when
	// backward; "" for the first page.
	cursor   string
	backward bool
}

func (q listQuery) cursorParam() string {
	if q.backward {
		return "ending_before"
	}
	return "starting_after"
}

// parseListQuery reads Stripe's list parameters: created (an integer, or a
// hash of gt, gte, lt, lte), limit (1 to 100, default 10), starting_after
// and ending_before (not both).
func parseListQuery(f *form) (listQuery, *apiError) {
	q := listQuery{lo: -1 << 62, hi: 1 << 62, limit: defaultListLimit}
	if v, ok := f.get("created"); ok {
		n, e := parseInt("created", v)
		if e != nil {
			return q, e
		}
		q.lo, q.hi = n, n
	} else if h, ok, e := f.hash("created"); e != nil {
		return q, e
	} else if ok {
		if e := checkKeys("created", h, "gt", "gte", "lt", "lte"); e != nil {
			return q, e
		}
		for k, v := range h {
			n, e := parseInt("created["+k+"]", v)
			if e != nil {
				return q, e
			}
			switch k {
			case "gt":
				q.lo = max(q.lo, n+1)
			case "gte":
				q.lo = max(q.lo, n)
			case "lt":
				q.hi = min(q.hi, n-1)
			case "lte":
				q.hi = min(q.hi, n)
			}
		}
	}
	if v, ok, e := f.scalar("limit"); e != nil {
		return q, e
	} else if ok {
		n, e := parseInt("limit", v)
		if e != nil {
			return q, e
		}
		if n < 1 {
			return q, errInvalid("limit", "", "This value must be greater than or equal to 1.")
		}
		if n > maxListLimit {
			return q, errInvalid("limit", "", fmt.Sprintf("This value must be less than or equal to %d.", maxListLimit))
		}
		q.limit = int(n)
	}
	after, _, e := f.scalar("starting_after")
	if e != nil {
		return q, e
	}
	before, _, e := f.scalar("ending_before")
	if e != nil {
		return q, e
	}
	if after != "" && before != "" {
		return q, errExclusive("ending_before", "ending_before", "starting_after")
	}
	q.cursor, q.backward = cmp.Or(after, before), before != ""
	return q, nil
}

// pageOf is one page of a list, newest first: of window (ascending by
// less), the n newest items keep accepts that are older than cursor, or,
// when backward, the n oldest that are newer than it (Stripe's
// ending_before: the page just before the cursor's, still newest first);
// with no cursor, the n newest. more tells whether another item beyond
// the page is accepted. A nil keep accepts everything. The cursor need
// not lie in the window.
func pageOf[T any](window []*T, n int, cursor *T, backward bool, less func(a, b *T) bool, keep func(*T) bool) (page []*T, more bool) {
	take := func(item *T) bool {
		if keep != nil && !keep(item) {
			return true
		}
		if len(page) == n {
			more = true
			return false
		}
		page = append(page, item)
		return true
	}
	if backward && cursor != nil {
		from := sort.Search(len(window), func(i int) bool { return less(cursor, window[i]) })
		for i := from; i < len(window) && take(window[i]); i++ {
		}
		slices.Reverse(page)
		return page, more
	}
	to := len(window)
	if cursor != nil {
		to = sort.Search(len(window), func(i int) bool { return !less(window[i], cursor) })
	}
	for i := to - 1; i >= 0 && take(window[i]); i-- {
	}
	return page, more
}

func listPIs(f *form, _ string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("created", "limit", "starting_after", "ending_before", "expand", "customer"); e != nil {
		return nil, e
	}
	q, e := parseListQuery(f)
	if e != nil {
		return nil, e
	}
	ex, e := parseExpand(f, "data.")
	if e != nil {
		return nil, e
	}
	customer, _, e := f.scalar("customer")
	if e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		s := x.s
		// s.order is ascending by (Created, Seq); the window is the
		// created range.
		start := sort.Search(len(s.order), func(i int) bool { return s.order[i].Created >= q.lo })
		end := sort.Search(len(s.order), func(i int) bool { return s.order[i].Created > q.hi })
		window := s.order[start:max(start, end)]
		if customer != "" {
			window = nil // The sandbox has no customers, so none has PaymentIntents.
		}
		var cursor *paymentIntent
		if q.cursor != "" {
			if cursor = s.pis[q.cursor]; cursor == nil {
				return errorResponse(errNoSuch(http.StatusBadRequest, "payment_intent", q.cursor, q.cursorParam()))
			}
		}
		page, more := pageOf(window, q.limit, cursor, q.backward, before, nil)
		data := make([]any, len(page))
		for i, pi := range page {
			data[i] = s.renderPI(pi, x.base, ex)
		}
		return jsonResponse(http.StatusOK, map[string]any{
			"object": "list", "data": data, "has_more": more, "url": "/v1/payment_intents",
		})
	}, nil
}

func createPM(f *form, _ string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("type", "card", "billing_details", "metadata", "expand", "allow_redisplay"); e != nil {
		return nil, e
	}
	typ, ok, e := f.scalar("type")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, errMissing("type")
	}
	if typ != "card" {
		return nil, errInvalid("type", "", fmt.Sprintf("Invalid type: the sandbox knows only card, not %s.", typ))
	}
	card, ok, e := f.hash("card")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, errMissing("card")
	}
	if e := checkKeys("card", card, "token", "number", "exp_month", "exp_year", "cvc"); e != nil {
		return nil, e
	}
	var tc *testCard
	var expMonth, expYear int64
	switch tok, num := card["token"], strings.ReplaceAll(card["number"], " ", ""); {
	case tok != "":
		if tc = cardsByToken[tok]; tc == nil {
			return nil, errNoSuch(http.StatusBadRequest, "token", tok, "card[token]")
		}
	case num != "":
		for _, k := range []string{"exp_month", "exp_year"} {
			if card[k] == "" {
				return nil, errMissing("card[" + k + "]")
			}
		}
		if expMonth, e = parseInt("card[exp_month]", card["exp_month"]); e != nil {
			return nil, e
		}
		if expYear, e = parseInt("card[exp_year]", card["exp_year"]); e != nil {
			return nil, e
		}
		if expMonth < 1 || expMonth > 12 {
			return nil, &apiError{status: http.StatusPaymentRequired, Type: typeCard, Code: "invalid_expiry_month", Param: "exp_month", Message: "Your card's expiration month is invalid."}
		}
		if tc = cardsByNumber[num]; tc == nil {
			return nil, &apiError{status: http.StatusPaymentRequired, Type: typeCard, Code: "incorrect_number", Param: "number", Message: "Your card number is incorrect."}
		}
	default:
		return nil, errMissing("card[token]")
	}
	name, _ := f.get("billing_details", "name")
	email, _ := f.get("billing_details", "email")
	meta, e := parseMetadata(f)
	if e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		s := x.s
		if len(s.pms) >= s.opts.MaxPaymentIntents {
			return errorResponse(errInvalid("", "", fmt.Sprintf("The sandbox holds its maximum of %d PaymentMethods; start a new sandbox or raise the bound.", s.opts.MaxPaymentIntents)))
		}
		pm := &paymentMethod{ID: newID("pm_", 24), Card: tc.name, Created: x.now.Unix(),
			ExpMonth: expMonth, ExpYear: expYear, Name: name, Email: email, Metadata: meta}
		if pm.ExpMonth == 0 {
			pm.ExpMonth, pm.ExpYear = 12, int64(x.now.Year()+1)
		}
		s.pms[pm.ID] = pm
		x.createdPM(pm)
		return jsonResponse(http.StatusOK, s.renderPM(pm))
	}, nil
}

func retrievePM(f *form, id string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("expand"); e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		pm := x.s.lookupPM(id, x.now)
		if pm == nil {
			return errorResponse(errNoSuch(http.StatusNotFound, "PaymentMethod", id, "payment_method"))
		}
		return jsonResponse(http.StatusOK, x.s.renderPM(pm))
	}, nil
}

func createRefund(f *form, _ string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("payment_intent", "charge", "amount", "reason", "metadata", "expand"); e != nil {
		return nil, e
	}
	piID, _, e := f.scalar("payment_intent")
	if e != nil {
		return nil, e
	}
	chID, _, e := f.scalar("charge")
	if e != nil {
		return nil, e
	}
	if piID == "" && chID == "" {
		return nil, errInvalid("payment_intent", "parameter_missing", "One of the following params should be provided for this request: payment_intent or charge.")
	}
	var amount int64
	if v, ok, e := f.scalar("amount"); e != nil {
		return nil, e
	} else if ok {
		if amount, e = parseInt("amount", v); e != nil {
			return nil, e
		}
		if amount < 1 {
			return nil, errInvalid("amount", "", "Invalid positive integer")
		}
	}
	reason, _, e := f.scalar("reason")
	if e != nil {
		return nil, e
	}
	switch reason {
	case "", "duplicate", "fraudulent", "requested_by_customer":
	default:
		return nil, errInvalid("reason", "", fmt.Sprintf("Invalid reason: must be one of duplicate, fraudulent or requested_by_customer, not %s.", reason))
	}
	meta, e := parseMetadata(f)
	if e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		s := x.s
		var pi *paymentIntent
		if piID != "" {
			if pi = s.pis[piID]; pi == nil {
				return errorResponse(errNoSuch(http.StatusBadRequest, "payment_intent", piID, "payment_intent"))
			}
		} else if pi = s.charges[chID]; pi == nil || pi.Charge.ID != chID {
			return errorResponse(errNoSuch(http.StatusBadRequest, "charge", chID, "charge"))
		}
		ch := pi.Charge
		if pi.Status != statusSucceeded || ch == nil || ch.Status != statusSucceeded {
			return errorResponse(errInvalid("payment_intent", "", fmt.Sprintf("This PaymentIntent (%s) does not have a successful charge to refund.", pi.ID)))
		}
		if ch.Disputed {
			return errorResponse(errInvalid("charge", "charge_disputed", fmt.Sprintf("Charge %s has been charged back; cannot issue a refund.", ch.ID)))
		}
		left := ch.Amount - ch.AmountRefunded
		if left == 0 {
			return errorResponse(errInvalid("charge", "charge_already_refunded", fmt.Sprintf("Charge %s has already been refunded.", ch.ID)))
		}
		amt := amount
		if amt == 0 {
			amt = left
		}
		if amt > left {
			return errorResponse(errInvalid("amount", "amount_too_large", fmt.Sprintf("Refund amount (%s) is greater than unrefunded amount on charge (%s)",
				floodgate.FormatAmount(amt, pi.Currency), floodgate.FormatAmount(left, pi.Currency))))
		}
		x.savePI(pi)
		rf := &refund{ID: newID("re_", 24), Amount: amt, Created: x.now.Unix(), Reason: reason, Metadata: meta}
		pi.Refunds = append(pi.Refunds, rf)
		ch.AmountRefunded += amt
		s.refunds[rf.ID] = pi
		x.emit("charge.refunded", s.renderCharge(pi))
		return jsonResponse(http.StatusOK, s.renderRefund(pi, rf))
	}, nil
}

func retrieveRefund(f *form, id string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("expand"); e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		if pi := x.s.refunds[id]; pi != nil {
			for _, rf := range pi.Refunds {
				if rf.ID == id {
					return jsonResponse(http.StatusOK, x.s.renderRefund(pi, rf))
				}
			}
		}
		return errorResponse(errNoSuch(http.StatusNotFound, "refund", id, "id"))
	}, nil
}
