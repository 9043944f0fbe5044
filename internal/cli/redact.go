package cli

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// secretText matches what must never reach a log, at any level: a
// PaymentIntent's or SetupIntent's client secret (with it, anyone can
// finish the payment), Stripe secret and restricted keys, and webhook
// signing secrets. stripe-go logs whole response bodies at debug level,
// and an error can quote a request, so the whole log is filtered, not
// only the lines floodgate writes itself.
var secretText = regexp.MustCompile(`\b((?:pi|seti|src)_[A-Za-z0-9]+_secret_)[A-Za-z0-9]+|\b((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]+|\b(whsec_)[A-Za-z0-9+/=]+`)

// mayHoldSecret is a cheap test that spares the regular expression on
// the many lines that hold none.
func mayHoldSecret(s string) bool {
	return strings.Contains(s, "_secret_") || strings.Contains(s, "k_live_") || strings.Contains(s, "k_test_") || strings.Contains(s, "whsec_")
}

// redactSecrets replaces the secret part of every match with [redacted],
// keeping the prefix that says what it was.
func redactSecrets(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	return secretText.ReplaceAllString(s, "$1$2$3[redacted]")
}

// redactHandler filters secrets out of every record's message and
// attributes before the handler it wraps writes them.
type redactHandler struct{ slog.Handler }

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redactSecrets(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = redactAttr(a)
	}
	return redactHandler{h.Handler.WithAttrs(clean)}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h.Handler.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redactSecrets(v.String()))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]any, len(g))
		for i, ga := range g {
			clean[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		var text string
		switch x := v.Any().(type) {
		case error:
			text = x.Error()
		case fmt.Stringer:
			text = x.String()
		default:
			text = fmt.Sprintf("%+v", x)
		}
		if mayHoldSecret(text) {
			return slog.String(a.Key, redactSecrets(text))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
