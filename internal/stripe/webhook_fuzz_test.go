package stripe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// FuzzWebhookPayload signs whatever payload it is given with the right
// secret, so that the decoding behind the signature check is what is
// fuzzed: it returns an event or an error, never a panic.
func FuzzWebhookPayload(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","object":"event","api_version":"` + stripe.APIVersion + `","created":1,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","object":"payment_intent","amount":2500,"currency":"eur","status":"succeeded","metadata":{"donation_id":"don_x"}}}}`))
	f.Add([]byte(`{"id":"evt_2","object":"event","api_version":"` + stripe.APIVersion + `","type":"charge.refunded","data":{"object":{"id":"ch_1","object":"charge","amount_refunded":100,"payment_intent":"pi_1"}}}`))
	f.Add([]byte(`{"id":"evt_3","object":"event","api_version":"2019-01-01","type":"payment_intent.canceled","data":{"object":[]}}`))
	f.Add([]byte(`null`))
	const secret = "whsec_fuzz"
	w := Webhooks{Secrets: []string{secret}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ts := time.Now().Unix()
		m := hmac.New(sha256.New, []byte(secret))
		fmt.Fprintf(m, "%d.", ts)
		m.Write(payload)
		header := fmt.Sprintf("t=%d,v1=%s", ts, hex.EncodeToString(m.Sum(nil)))
		ev, err := w.Parse(payload, header)
		if err != nil {
			if errors.Is(err, floodgate.ErrEventSignature) || errors.Is(err, floodgate.ErrEventTimestamp) {
				t.Fatalf("a correctly signed payload was refused as unsigned: %v", err)
			}
			return
		}
		if ev == nil {
			t.Fatal("no event and no error")
		}
	})
}

// FuzzSignatureHeader holds the header check to stripe-go's verifier: a
// header around a correct signature, with whatever the fuzzer puts
// before and after it, that stripe-go accepts within the tolerance, is
// never refused by CheckSignatureHeader. Otherwise a genuine event would
// be refused before its body was read.
func FuzzSignatureHeader(f *testing.F) {
	f.Add("", "", int64(0))
	f.Add("v0=abc,", ",v1=00", int64(-120))
	f.Add("t=1,", "", int64(299))
	f.Add("x=1=2,", ",t=5", int64(0))
	f.Add("", ",v1="+strings.Repeat("ab", 32), int64(-300))
	const secret = "whsec_fuzz"
	payload := []byte(`{"id":"evt_1","object":"event","api_version":"` + stripe.APIVersion + `","type":"payment_intent.succeeded","data":{"object":{}}}`)
	f.Fuzz(func(t *testing.T, before, after string, skew int64) {
		now := time.Now()
		at := now.Unix() + skew%400
		m := hmac.New(sha256.New, []byte(secret))
		fmt.Fprintf(m, "%d.", at)
		m.Write(payload)
		header := before + fmt.Sprintf("t=%d,v1=%s", at, hex.EncodeToString(m.Sum(nil))) + after
		_, verr := ParseWebhook(payload, header, []string{secret}, 0)
		cerr := CheckSignatureHeader(header, 0, now)
		if verr == nil && cerr != nil && now.Unix()-at >= -300 {
			t.Fatalf("stripe-go verifies %q but the header check refuses it: %v", header, cerr)
		}
	})
}
