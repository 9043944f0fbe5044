package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/floodgate/floodgate/internal/writable"
)

// FileURI returns the SQLite URI that opens the database at path with
// query. The path is made absolute first: in a URI, "file://dir/x.db"
// names dir as a host, so a relative path (the default data directory
// is ./floodgate-data) cannot be written after "file:" at all. Every
// character a path may hold is percent-escaped, and SQLite decodes it.
func FileURI(path string, query url.Values) (string, error) {
	if path == "" {
		return "", errors.New("no database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: query.Encode()}
	s := u.String()
	// SQLite reads the path up to '?' or '#' and decodes %HH; check that
	// what it will read is the file meant, whatever the path held.
	back, err := url.Parse(s)
	if err != nil || back.Path != abs || back.Host != "" {
		return "", fmt.Errorf("path %q cannot be written as a SQLite URI", path)
	}
	return s, nil
}

// CheckPath tells whether Open could open (or create) the database at
// path, the way Open will, without opening it: no lock is taken and no
// file or directory is created. `floodgate config` runs it so that a path
// `floodgate serve` cannot open is refused before anything starts.
func CheckPath(path string) error {
	if _, err := FileURI(path, nil); err != nil {
		return err
	}
	abs, _ := filepath.Abs(path)
	if fi, err := os.Stat(abs); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s exists and is not a regular file", abs)
		}
		if err := unix.Access(abs, unix.R_OK|unix.W_OK); err != nil {
			return fmt.Errorf("%s cannot be read and written: %w", abs, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// The directory holds the file, its lock and its write-ahead log: it
	// must be writable, or creatable (Open's caller creates it).
	if err := writable.Creatable(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("the directory %s %v", filepath.Dir(abs), err)
	}
	return nil
}

// privateFiles creates the database file readable by its owner alone
// when it does not exist yet, and takes group and other access away from
// the files a store is kept in when an earlier version left them open:
// they hold donors' names, emails and addresses. SQLite gives its
// write-ahead log and shared-memory files the mode of the database file.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("making %s private: %w", p, err)
			}
		}
	}
	return nil
}

// minRoom is the free space below which the store is not ready: less
// than one full group commit (512 donations with their history lines)
// may need, so accepts would start failing.
const minRoom = 4 << 20
