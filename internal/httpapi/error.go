package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	floodgate.EINVALID:        http.StatusBadRequest,
	floodgate.EUNAUTHORIZED:   http.StatusUnauthorized,
	floodgate.ENOTFOUND:       http.StatusNotFound,
	floodgate.EMETHOD:         http.StatusMethodNotAllowed,
	floodgate.ECONFLICT:       http.StatusConflict,
	floodgate.ESTATE:          http.StatusConflict,
	floodgate.ECAMPAIGNCLOSED: http.StatusConflict,
	floodgate.EIDEMCONFLICT:   http.StatusConflict,
	floodgate.ETOOLARGE:       http.StatusRequestEntityTooLarge,
	floodgate.EMEDIATYPE:      http.StatusUnsupportedMediaType,
	floodgate.EIDEMMISMATCH:   http.StatusUnprocessableEntity,
	floodgate.ERATELIMITED:    http.StatusTooManyRequests,
	floodgate.EINTERNAL:       http.StatusInternalServerError,
	floodgate.EOVERLOADED:     http.StatusServiceUnavailable,
	floodgate.EUNAVAILABLE:    http.StatusServiceUnavailable,
}

var titleOf = map[string]string{
	floodgate.EINVALID:        "Your request has invalid fields.",
	floodgate.EUNAUTHORIZED:   "A valid token is required.",
	floodgate.ENOTFOUND:       "Not found.",
	floodgate.EMETHOD:         "Method not allowed.",
	floodgate.ECONFLICT:       "It already exists.",
	floodgate.ESTATE:          "Not allowed in the current state.",
	floodgate.ECAMPAIGNCLOSED: "The campaign is not taking donations.",
	floodgate.EIDEMCONFLICT:   "A request with this Idempotency-Key is still being processed.",
	floodgate.ETOOLARGE:       "The request body is too large.",
	floodgate.EMEDIATYPE:      "The request body must be application/json.",
	floodgate.EIDEMMISMATCH:   "This Idempotency-Key was used with a different request.",
	floodgate.ERATELIMITED:    "Too many requests.",
	floodgate.EINTERNAL:       "Internal error.",
	floodgate.EOVERLOADED:     "The server is overloaded.",
	floodgate.EUNAVAILABLE:    "The service is temporarily unavailable.",
}

// Problem is an RFC 9457 problem detail; Type is the contract's stable slug.
type Problem struct {
	Type   string                 `json:"type"`
	Title  string                 `json:"title"`
	Status int                    `json:"status"`
	Detail string                 `json:"detail,omitempty"`
	Errors []floodgate.FieldError `json:"errors,omitempty"`
}

// writeError answers err as problem+json. An error that is not a
// *floodgate.Error is logged with its cause and answered as internal.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *floodgate.Error
	if !errors.As(err, &fe) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client hung up; nobody will read an answer.
			w.WriteHeader(499)
			return
		}
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		fe = &floodgate.Error{Code: floodgate.EINTERNAL}
	}
	status, ok := statusOf[fe.Code]
	if !ok {
		s.log.Error("error code without a status", "code", fe.Code, "err", err)
		fe = &floodgate.Error{Code: floodgate.EINTERNAL}
		status = http.StatusInternalServerError
	}
	if status >= 500 && fe.Err != nil {
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", fe.Code, "err", fe.Err)
	}
	p := Problem{Type: fe.Code, Title: titleOf[fe.Code], Status: status, Errors: fe.Fields}
	if fe.Code != floodgate.EINTERNAL {
		p.Detail = fe.Message
	}
	if fe.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(fe.RetryAfter))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// retryAfter renders a duration as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// logger returns a usable logger.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
