package ingest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

var now = time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)

func testCampaign() *floodgate.Campaign {
	c := &floodgate.Campaign{ID: "demo", Name: "Demo", Currency: "eur", MinAmount: 100, MaxAmount: 100_000,
		TaxSchemes: []string{floodgate.SchemeIE, floodgate.SchemeUKGiftAid}}
	c.SetDefaults(now.Add(-time.Hour))
	return c
}

const good = `{"amount": 2500, "currency": "eur", "email": "aoife@example.ie", "name": "Aoife",
	"payment_method": "pm_card_visa", "anonymous": false, "message": "Go on!",
	"declaration": {"scheme": "uk_gift_aid", "text_version": "2026-01", "first_name": "Aoife",
	"last_name": "Byrne", "house": "12", "postcode": "BT1 1AA"}}`

// with returns good with one top-level field replaced (or removed, when
// value is empty).
func with(field, value string) string {
	m := map[string]string{
		"amount": `2500`, "currency": `"eur"`, "email": `"aoife@example.ie"`, "name": `"Aoife"`,
		"payment_method": `"pm_card_visa"`, "message": `"Go on!"`,
	}
	if value == "" {
		delete(m, field)
	} else {
		m[field] = value
	}
	var parts []string
	for _, k := range []string{"amount", "currency", "email", "name", "payment_method", "message", field} {
		if v, ok := m[k]; ok {
			parts = append(parts, `"`+k+`":`+v)
			delete(m, k)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestDonationRules(t *testing.T) {
	closed := testCampaign()
	past := now.Add(-time.Minute)
	closed.ClosesAt = &past
	scheduled := testCampaign()
	scheduled.OpensAt = now.Add(time.Hour)
	ieOnly := testCampaign()
	ieOnly.TaxSchemes = []string{floodgate.SchemeIE}

	tests := []struct {
		name     string
		body     string
		campaign *floodgate.Campaign
		code     string
		field    string
	}{
		{"good", good, nil, "", ""},
		{"minimal", with("message", ""), nil, "", ""},
		{"upper-case currency is the same currency", with("currency", `"EUR"`), nil, "", ""},
		{"malformed JSON", `{"amount": 2500,`, nil, floodgate.EINVALID, "body"},
		{"not an object", `[1,2]`, nil, floodgate.EINVALID, "body"},
		{"two objects", good + good, nil, floodgate.EINVALID, "body"},
		{"empty body", ``, nil, floodgate.EINVALID, "body"},
		{"invalid UTF-8", "{\"amount\":2500,\"name\":\"\xff\"}", nil, floodgate.EINVALID, "body"},
		{"unknown field", with("card_number", `"4242"`), nil, floodgate.EINVALID, "card_number"},
		{"field in another letter case", strings.Replace(good, `"amount"`, `"AMOUNT"`, 1), nil, floodgate.EINVALID, "AMOUNT"},
		{"field given twice", strings.Replace(good, `"amount": 2500,`, `"amount": 2500, "amount": 9999,`, 1), nil, floodgate.EINVALID, "amount"},
		{"declaration field in another case", strings.Replace(good, `"scheme"`, `"Scheme"`, 1), nil, floodgate.EINVALID, "declaration.Scheme"},
		{"declaration field twice", strings.Replace(good, `"house": "12"`, `"house": "12", "house": "14"`, 1), nil, floodgate.EINVALID, "declaration.house"},
		{"amount missing", with("amount", ""), nil, floodgate.EINVALID, "amount"},
		{"amount a float", with("amount", `25.5`), nil, floodgate.EINVALID, "amount"},
		{"amount a string", with("amount", `"2500"`), nil, floodgate.EINVALID, "amount"},
		{"amount below minimum", with("amount", `99`), nil, floodgate.EINVALID, "amount"},
		{"amount negative", with("amount", `-2500`), nil, floodgate.EINVALID, "amount"},
		{"amount above maximum", with("amount", `100001`), nil, floodgate.EINVALID, "amount"},
		{"amount overflows", with("amount", `99999999999999999999`), nil, floodgate.EINVALID, "amount"},
		{"currency missing", with("currency", ""), nil, floodgate.EINVALID, "currency"},
		{"currency mismatch", with("currency", `"gbp"`), nil, floodgate.EINVALID, "currency"},
		{"email missing", with("email", ""), nil, floodgate.EINVALID, "email"},
		{"email malformed", with("email", `"aoife@"`), nil, floodgate.EINVALID, "email"},
		{"email with a display name", with("email", `"Aoife <a@example.ie>"`), nil, floodgate.EINVALID, "email"},
		{"email too long", with("email", `"`+strings.Repeat("a", 250)+`@example.ie"`), nil, floodgate.EINVALID, "email"},
		{"name too long", with("name", `"`+strings.Repeat("n", 201)+`"`), nil, floodgate.EINVALID, "name"},
		{"name with a control character", with("name", `"Ao\u0007ife"`), nil, floodgate.EINVALID, "name"},
		{"name with a newline", with("name", `"Ao\nife"`), nil, floodgate.EINVALID, "name"},
		{"name with a NUL", with("name", `"Ao\u0000ife"`), nil, floodgate.EINVALID, "name"},
		{"name with bidi override", with("name", `"Ao\u202eife"`), nil, floodgate.EINVALID, "name"},
		{"name with half a surrogate pair", with("name", `"Ao\ud83dife"`), nil, floodgate.EINVALID, "name"},
		{"name with a low surrogate alone", with("name", `"Ao\udc00ife"`), nil, floodgate.EINVALID, "name"},
		{"name with two high surrogates", with("name", `"\ud83d\ud83d\ude00"`), nil, floodgate.EINVALID, "name"},
		{"name with an escaped emoji", with("name", `"Aoife \ud83d\ude00 \\ud800"`), nil, "", ""},
		{"declaration name with half a pair", with("declaration", `{"scheme": "ie", "text_version": "v1", "first_name": "\ud800", "last_name": "B"}`), nil, floodgate.EINVALID, "declaration.first_name"},
		{"message may have newlines", with("message", `"Go on!\nWell done."`), nil, "", ""},
		{"message too long", with("message", `"`+strings.Repeat("m", 501)+`"`), nil, floodgate.EINVALID, "message"},
		{"message with escape", with("message", `"\u001b[31m"`), nil, floodgate.EINVALID, "message"},
		{"payment method missing", with("payment_method", ""), nil, floodgate.EINVALID, "payment_method"},
		{"payment method a card number", with("payment_method", `"4242424242424242"`), nil, floodgate.EINVALID, "payment_method"},
		{"anonymous a string", with("anonymous", `"yes"`), nil, floodgate.EINVALID, "anonymous"},
		{"declaration scheme unknown", with("declaration", `{"scheme":"us","text_version":"1","first_name":"A","last_name":"B"}`), nil, floodgate.EINVALID, "declaration.scheme"},
		{"declaration scheme not offered", good, ieOnly, floodgate.EINVALID, "declaration.scheme"},
		{"declaration incomplete", with("declaration", `{"scheme":"uk_gift_aid","text_version":"1","first_name":"A","last_name":"B","house":"12"}`), nil, floodgate.EINVALID, "declaration.postcode"},
		{"declaration without names", with("declaration", `{"scheme":"ie","text_version":"1"}`), nil, floodgate.EINVALID, "declaration.first_name"},
		{"declaration bad postcode", with("declaration", `{"scheme":"uk_gift_aid","text_version":"1","first_name":"A","last_name":"B","house":"1","postcode":"12345"}`), nil, floodgate.EINVALID, "declaration.postcode"},
		{"declaration unknown field", with("declaration", `{"scheme":"ie","text_version":"1","first_name":"A","last_name":"B","ppsn":"x"}`), nil, floodgate.EINVALID, "declaration.ppsn"},
		{"ie declaration without address", with("declaration", `{"scheme":"ie","text_version":"1","first_name":"A","last_name":"B"}`), nil, "", ""},
		{"closed campaign", good, closed, floodgate.ECAMPAIGNCLOSED, ""},
		{"campaign not open yet", good, scheduled, floodgate.ECAMPAIGNCLOSED, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.campaign
			if c == nil {
				c = testCampaign()
			}
			req, err := DecodeDonation([]byte(tt.body))
			var d *floodgate.Donation
			if err == nil {
				d, err = req.Validate(c)
			}
			if err == nil {
				err = CheckOpen(c, now)
			}
			if got := floodgate.ErrorCode(err); got != tt.code {
				t.Fatalf("code = %q (%v), want %q", got, err, tt.code)
			}
			if tt.code == "" {
				if d == nil || len(d.RequestHash) != 32 || d.CampaignID != "demo" || d.Currency != "eur" {
					t.Fatalf("donation = %+v", d)
				}
				return
			}
			if tt.field != "" && !namesField(err, tt.field) {
				t.Fatalf("error %v does not name field %q", err, tt.field)
			}
		})
	}
}

func namesField(err error, field string) bool {
	fe, ok := err.(*floodgate.Error)
	if !ok {
		return false
	}
	for _, f := range fe.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

func TestDonationEveryFieldNamed(t *testing.T) {
	req, err := DecodeDonation([]byte(`{"amount": 1, "currency": "usd", "email": "x", "payment_method": "card"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = req.Validate(testCampaign())
	for _, f := range []string{"amount", "currency", "email", "payment_method"} {
		if !namesField(err, f) {
			t.Errorf("error %v does not name %q", err, f)
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	body := `{"message": "` + strings.Repeat("x", MaxBody) + `"}`
	_, err := DecodeDonation([]byte(body))
	if floodgate.ErrorCode(err) != floodgate.ETOOLARGE {
		t.Fatalf("code = %v, want payload_too_large", err)
	}
}

// TestRequestHash: the same request in another spelling is the same
// request; any change of meaning is another.
func TestRequestHash(t *testing.T) {
	hash := func(body string) []byte {
		t.Helper()
		req, err := DecodeDonation([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		d, err := req.Validate(testCampaign())
		if err != nil {
			t.Fatal(err)
		}
		return d.RequestHash
	}
	base := hash(good)
	same := hash(strings.ReplaceAll(strings.Replace(good, `"eur"`, `"EUR"`, 1), "\n\t", " "))
	if !bytes.Equal(base, same) {
		t.Fatal("respelled request hashed differently")
	}
	if bytes.Equal(base, hash(strings.Replace(good, "2500", "2600", 1))) {
		t.Fatal("another amount hashed the same")
	}
	if bytes.Equal(base, hash(strings.Replace(good, `"12"`, `"14"`, 1))) {
		t.Fatal("another declaration hashed the same")
	}
}

func TestTokens(t *testing.T) {
	tk := NewTokens([]byte("0123456789abcdef0123456789abcdef"))
	a := tk.For("don_a")
	if !tk.Valid("don_a", a) || tk.Valid("don_b", a) || tk.Valid("don_a", a+"x") || tk.Valid("don_a", "") {
		t.Fatal("token check wrong")
	}
	if NewTokens([]byte("another secret")).Valid("don_a", a) {
		t.Fatal("token valid under another secret")
	}
}

// FuzzDecodeDonation: whatever the body, decoding and validation return a
// donation or a client error, never a panic or an internal error, and an
// accepted donation always keeps the rules.
func FuzzDecodeDonation(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(with("amount", "1e3")))
	f.Add([]byte(`{"declaration": null}`))
	f.Add([]byte(`{"amount": 2500, "currency": "eur", "email": "a@b.co", "payment_method": "pm_x", "message": "\ud800"}`))
	f.Add([]byte("\xef\xbb\xbf{}"))
	c := testCampaign()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeDonation(body)
		if err != nil {
			if code := floodgate.ErrorCode(err); code != floodgate.EINVALID && code != floodgate.ETOOLARGE {
				t.Fatalf("decode error code %q: %v", code, err)
			}
			return
		}
		d, err := req.Validate(c)
		if err != nil {
			if code := floodgate.ErrorCode(err); code != floodgate.EINVALID {
				t.Fatalf("validate error code %q: %v", code, err)
			}
			if len(err.(*floodgate.Error).Fields) == 0 {
				t.Fatalf("validation error names no field: %v", err)
			}
			return
		}
		if d.Amount < c.MinAmount || d.Amount > c.MaxAmount || d.Currency != c.Currency ||
			floodgate.CheckEmail(d.Email) != "" || floodgate.CheckPaymentMethod(d.PaymentMethod) != "" ||
			floodgate.CheckText(d.Name, floodgate.MaxNameLen, false) != "" ||
			floodgate.CheckText(d.Message, floodgate.MaxMessageLen, true) != "" {
			t.Fatalf("accepted a donation that breaks a rule: %+v", d)
		}
	})
}

func BenchmarkDecodeAndValidate(b *testing.B) {
	c := testCampaign()
	body := []byte(good)
	for b.Loop() {
		req, err := DecodeDonation(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := req.Validate(c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMemberNamesWithEscapes: a member name spelled with escapes is the
// name it decodes to, as encoding/json reads it.
func TestMemberNamesWithEscapes(t *testing.T) {
	if _, err := DecodeDonation([]byte(`{"\u0061mount": 2500, "currency": "eur"}`)); err != nil {
		t.Fatalf("escaped exact name refused: %v", err)
	}
	_, err := DecodeDonation([]byte(`{"\u0041mount": 2500}`))
	if !namesField(err, "Amount") {
		t.Fatalf("escaped name in another case: %v", err)
	}
	_, err = DecodeDonation([]byte(`{"amount": 1, "\u0061mount": 2}`))
	if !namesField(err, "amount") {
		t.Fatalf("the same name twice, once escaped: %v", err)
	}
	if _, err := DecodeDonation([]byte(`{"message": "a \"quoted\" {brace} [x]", "amount": 5}`)); err != nil {
		t.Fatalf("strings with delimiters: %v", err)
	}
}
