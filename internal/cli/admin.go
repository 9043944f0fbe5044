package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// adminTokenFile keeps the SHA-256 of the generated admin token; the token
// itself is printed once and never stored.
const adminTokenFile = "admin-token.sha256"

// newAdminToken returns a fresh admin token: 256 random bits.
func newAdminToken() string {
	var r [32]byte
	_, _ = rand.Read(r[:])
	return "fga_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(r[:]))
}

// adminKey is the admin token's hash as the API checks it. A configured
// token is fixed. A generated one is read from the data directory, and
// read again when the file changes, so that `floodgate admin-token reset`
// takes effect on a running node without a restart.
type adminKey struct {
	path string // "" for a configured token

	mu      sync.Mutex
	hash    [32]byte
	modTime time.Time
	checked time.Time
}

// Hash returns the current hash; it looks at the file at most once a
// second (admin requests are rare; a failed read keeps the last hash).
func (k *adminKey) Hash() [32]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.path == "" || time.Since(k.checked) < time.Second {
		return k.hash
	}
	k.checked = time.Now()
	if fi, err := os.Stat(k.path); err == nil && !fi.ModTime().Equal(k.modTime) {
		if h, err := readAdminHash(k.path); err == nil {
			k.hash, k.modTime = h, fi.ModTime()
		}
	}
	return k.hash
}

// adminToken prepares the admin token's hash: the configured token's, the
// one kept in the data directory, or a new one. A new token is returned
// in pending and nothing is written: Open keeps its hash and prints it
// only once the node has started, so a start that fails never shows a
// token it did not keep.
func (m *Main) adminToken() (key *adminKey, pending string, err error) {
	if t := m.Config.AdminToken; t != "" {
		return &adminKey{hash: sha256.Sum256([]byte(t))}, "", nil
	}
	path := filepath.Join(m.Config.DataDir, adminTokenFile)
	fi, err := os.Stat(path)
	if err == nil {
		h, err := readAdminHash(path)
		if err != nil {
			return nil, "", err
		}
		m.Logger.Info("admin token: only its hash is kept; `floodgate admin-token reset` makes a new one", "hash_file", path)
		return &adminKey{path: path, hash: h, modTime: fi.ModTime(), checked: time.Now()}, "", nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", err
	}
	token := newAdminToken()
	return &adminKey{path: path, hash: sha256.Sum256([]byte(token)), checked: time.Now()}, token, nil
}

// keepAdminToken writes a new token's hash and prints the token, once.
func (m *Main) keepAdminToken(key *adminKey, token string) error {
	if err := writeAdminHash(key.path, key.hash); err != nil {
		return err
	}
	if fi, err := os.Stat(key.path); err == nil {
		key.mu.Lock()
		key.modTime = fi.ModTime()
		key.mu.Unlock()
	}
	printAdminToken(m.Stdout, key.path, token)
	return nil
}

func printAdminToken(w io.Writer, path, token string) {
	fmt.Fprintf(w, "Admin token (shown once; only its hash is kept in %s;\n`floodgate admin-token reset` makes a new one):\n\n    %s\n\n", path, token)
}

func readAdminHash(path string) ([32]byte, error) {
	var h [32]byte
	b, err := os.ReadFile(path)
	if err != nil {
		return h, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return h, fmt.Errorf("%s is damaged: `floodgate admin-token reset` makes a new admin token", path)
	}
	copy(h[:], raw)
	return h, nil
}

// writeAdminHash replaces the hash file atomically (a reader sees the old
// hash or the new one, never half of one), readable by its owner alone.
func writeAdminHash(path string, h [32]byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keeping the admin token hash: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(h[:]) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("keeping the admin token hash: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("keeping the admin token hash: %w", err)
	}
	return nil
}

// runAdminToken is `floodgate admin-token reset`: a new admin token for the
// data directory, printed once; a running node takes it within a second,
// and the old one stops working.
func runAdminToken(args []string, env Env) error {
	if len(args) == 0 || args[0] != "reset" {
		return usageError{"usage: floodgate admin-token reset [--data-dir DIR]"}
	}
	cfg, err := loadConfig("admin-token reset", args[1:], env)
	if cfg == nil {
		return err
	}
	if cfg.AdminToken != "" {
		return cfg.Refuse("FLOODGATE_ADMIN_TOKEN", "is set, so the admin token comes from the configuration, not the data directory: change it there")
	}
	fi, err := os.Stat(cfg.DataDir)
	if err != nil || !fi.IsDir() {
		return cfg.Refuse("FLOODGATE_DATA_DIR", "is not a directory floodgate has started in")
	}
	token := newAdminToken()
	path := filepath.Join(cfg.DataDir, adminTokenFile)
	if err := writeAdminHash(path, sha256.Sum256([]byte(token))); err != nil {
		return err
	}
	printAdminToken(env.Stdout, path, token)
	return nil
}
