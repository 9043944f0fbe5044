package floodgate

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error codes are the stable slugs of the public contract. Each maps to one
// HTTP status in internal/httpapi; anything else is an internal error.
const (
	EINVALID        = "validation_failed"      // 400: a field breaks a rule
	ENOTFOUND       = "not_found"              // 404
	EUNAUTHORIZED   = "unauthorized"           // 401: missing or wrong token
	ECONFLICT       = "conflict"               // 409: the resource already exists
	ESTATE          = "invalid_state"          // 409: not allowed in the current state
	ECAMPAIGNCLOSED = "campaign_closed"        // 409
	EIDEMMISMATCH   = "idempotency_mismatch"   // 422: same key, other body
	EIDEMCONFLICT   = "idempotency_conflict"   // 409: same key still in progress
	ETOOLARGE       = "payload_too_large"      // 413
	EMEDIATYPE      = "unsupported_media_type" // 415
	EMETHOD         = "method_not_allowed"     // 405
	ERATELIMITED    = "rate_limited"           // 429
	EOVERLOADED     = "overloaded"             // 503: shed before any work was done
	EUNAVAILABLE    = "unavailable"            // 503: a dependency failed; nothing was kept
	EINTERNAL       = "internal"               // 500
)

// FieldError names one field of a request and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type that crosses package boundaries with a meaning
// a client may see. Message is written for the client; it never carries a
// raw cause (that goes to the log through Err).
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
	// RetryAfter, when positive, tells the client how long to wait.
	RetryAfter time.Duration
	// Err is the underlying cause, for the log only.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	for _, f := range e.Fields {
		fmt.Fprintf(&b, " [%s: %s]", f.Field, f.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error naming one field.
func Invalid(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: EINVALID, Message: field + ": " + msg, Fields: []FieldError{{Field: field, Message: msg}}}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// EINTERNAL otherwise. A nil error has no code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-facing message of err; an error that is
// not an *Error yields "Internal error." so that no cause leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "Internal error."
}

// Validation collects field errors so that a client learns every broken
// rule of a request at once.
type Validation struct {
	Fields []FieldError
}

// Add records a broken rule on field.
func (v *Validation) Add(field, format string, args ...any) {
	v.Fields = append(v.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when nothing was added, or one EINVALID error naming
// every field.
func (v *Validation) Err() error {
	if len(v.Fields) == 0 {
		return nil
	}
	msg := "Invalid " + v.Fields[0].Field + ": " + v.Fields[0].Message
	if len(v.Fields) > 1 {
		msg = fmt.Sprintf("%s (and %d more)", msg, len(v.Fields)-1)
	}
	return &Error{Code: EINVALID, Message: msg, Fields: v.Fields}
}
