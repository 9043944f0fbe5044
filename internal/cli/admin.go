package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// adminTokenFile keeps the SHA-256 of the generated admin token; the token
// itself is printed once and never stored.
const adminTokenFile = "admin-token.sha256"

// adminToken returns the hash of the admin token: the configured one, or
// the one generated on the first start (printed then, once).
func (m *Main) adminToken() ([32]byte, error) {
	if t := m.Config.AdminToken; t != "" {
		return sha256.Sum256([]byte(t)), nil
	}
	path := filepath.Join(m.Config.DataDir, adminTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var h [32]byte
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != 32 {
			return h, fmt.Errorf("%s is damaged: delete it to generate a new admin token", path)
		}
		copy(h[:], raw)
		return h, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return [32]byte{}, err
	}
	var r [32]byte
	_, _ = rand.Read(r[:])
	token := "fga_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(r[:]))
	h := sha256.Sum256([]byte(token))
	if err := os.WriteFile(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
		return h, fmt.Errorf("keeping the admin token hash: %w", err)
	}
	fmt.Fprintf(m.Stdout, "Admin token (shown once; only its hash is kept in %s):\n\n    %s\n\n", path, token)
	return h, nil
}
