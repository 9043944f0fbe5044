package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Stripe's error types.
const (
	typeAPI            = "api_error"
	typeCard           = "card_error"
	typeIdempotency    = "idempotency_error"
	typeInvalidRequest = "invalid_request_error"
)

// apiError is one Stripe error, in the shape of the "error" member of
// Stripe's error body. Handlers return it; it is written as
// {"error": {...}} with its HTTP status and headers.
type apiError struct {
	Charge        string `json:"charge,omitempty"`
	Code          string `json:"code,omitempty"`
	DeclineCode   string `json:"decline_code,omitempty"`
	DocURL        string `json:"doc_url,omitempty"`
	Message       string `json:"message"`
	Param         string `json:"param,omitempty"`
	PaymentIntent any    `json:"payment_intent,omitempty"`
	PaymentMethod any    `json:"payment_method,omitempty"`
	Type          string `json:"type"`

	status int
	// shouldRetry, when set, is sent as Stripe-Should-Retry.
	shouldRetry string
	// rateReason, when set, is sent as Stripe-Rate-Limited-Reason.
	rateReason string
}

// response is one answer of the API, kept whole so that it can be stored
// under an idempotency key and replayed byte for byte.
type response struct {
	status      int
	body        []byte
	shouldRetry string
	rateReason  string
}

func jsonResponse(status int, v any) *response {
	b, err := json.Marshal(v)
	if err != nil {
		// Every value rendered here is built from plain structs and maps;
		// a marshal failure is a programming error worth a loud 500.
		return errorResponse(errInternal(fmt.Sprintf("rendering response: %v", err)))
	}
	return &response{status: status, body: append(b, '\n')}
}

func errorResponse(e *apiError) *response {
	if e.Code != "" && e.DocURL == "" {
		e.DocURL = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(e.Code, "_", "-")
	}
	r := jsonResponse(e.status, map[string]any{"error": e})
	r.shouldRetry, r.rateReason = e.shouldRetry, e.rateReason
	return r
}

func (r *response) write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache, no-store")
	if r.shouldRetry != "" {
		h.Set("Stripe-Should-Retry", r.shouldRetry)
	}
	if r.rateReason != "" {
		h.Set("Stripe-Rate-Limited-Reason", r.rateReason)
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func errInvalid(param, code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, Type: typeInvalidRequest, Code: code, Param: param, Message: msg}
}

// errExclusive refuses parameters of which only one may be given; param,
// the one blamed, is among them.
func errExclusive(param string, names ...string) *apiError {
	return errInvalid(param, "parameters_exclusive", fmt.Sprintf("You may only specify one of these parameters: %s.", strings.Join(names, ", ")))
}

func errMissing(param string) *apiError {
	return errInvalid(param, "parameter_missing", fmt.Sprintf("Missing required param: %s.", param))
}

// errNoSuch is Stripe's resource_missing: 404 for the object named in the
// URL, 400 for one named in a parameter.
func errNoSuch(status int, kind, id, param string) *apiError {
	return &apiError{status: status, Type: typeInvalidRequest, Code: "resource_missing", Param: param,
		Message: fmt.Sprintf("No such %s: '%s'", kind, id)}
}

func errInternal(msg string) *apiError {
	return &apiError{status: http.StatusInternalServerError, Type: typeAPI, Message: msg}
}

func errUnrecognized(method, path string) *apiError {
	return &apiError{status: http.StatusNotFound, Type: typeInvalidRequest,
		Message: fmt.Sprintf("Unrecognized request URL (%s: %s). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.", method, path)}
}

// errUnexpectedState is payment_intent_unexpected_state, which carries the
// PaymentIntent as it is, so that the client learns its real status.
func errUnexpectedState(msg string, pi any) *apiError {
	return &apiError{status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "payment_intent_unexpected_state",
		Message: msg, PaymentIntent: pi}
}

// errJournal answers a request whose change the journal refused (a full
// disk): the change was undone, so, unlike Stripe's other 500s, it is not
// stored under the idempotency key, and resending is safe.
func errJournal() *apiError {
	e := errInternal("The sandbox could not record this request durably, so nothing was changed. Please try again.")
	e.shouldRetry = "true"
	return e
}
