package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sync"
)

// Tokens makes and checks donor tokens. A token is an HMAC of the donation
// id under a secret every node reads from the store, so any node can check
// it, an idempotent replay can hand out the same token again, and the token
// itself is never stored.
type Tokens struct {
	macs sync.Pool // keyed HMAC-SHA256 states, reused: one per request is hot-path garbage
}

// NewTokens returns Tokens keyed by secret.
func NewTokens(secret []byte) *Tokens {
	key := append([]byte(nil), secret...)
	t := &Tokens{}
	t.macs.New = func() any { return hmac.New(sha256.New, key) }
	return t
}

// For returns the donor token of donation id.
func (t *Tokens) For(id string) string {
	m := t.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte("donor-token:"))
	m.Write([]byte(id))
	var sum [sha256.Size]byte
	var out [3 + 43]byte
	copy(out[:], "dt_")
	base64.RawURLEncoding.Encode(out[3:], m.Sum(sum[:0]))
	t.macs.Put(m)
	return string(out[:])
}

// Valid reports, in constant time, whether token is donation id's token.
func (t *Tokens) Valid(id, token string) bool {
	return hmac.Equal([]byte(t.For(id)), []byte(token))
}
