package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/floodgate/floodgate/internal/sqlite"
)

// TestOpenAnyPath opens stores at relative paths (the default data
// directory is ./floodgate-data) and at paths holding characters a URI
// gives a meaning to, and finds each file where the path says.
func TestOpenAnyPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, p := range []string{
		"floodgate-data/floodgate.db",
		"./floodgate-data/x.db",
		"../" + filepath.Base(dir) + "/up.db",
		"odd dir/with space.db",
		"q?mark/h#sh/p%41ct.db",
		"colon:first/ünïcode;semi=&amp.db",
		filepath.Join(dir, "abs", "store.db"),
	} {
		t.Run(p, func(t *testing.T) {
			if err := sqlite.CheckPath(p); err != nil {
				t.Fatalf("CheckPath(%q) = %v before the directory exists, want nil", p, err)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			s, err := sqlite.Open(context.Background(), sqlite.Options{Path: p})
			if err != nil {
				t.Fatalf("Open(%q): %v", p, err)
			}
			if err := s.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("the store is not at %q: %v", p, err)
			}
			if fi.Size() == 0 {
				t.Fatalf("%q is empty: the store was written elsewhere", p)
			}
			if err := sqlite.CheckPath(p); err != nil {
				t.Fatalf("CheckPath(%q) = %v on an existing store, want nil", p, err)
			}
			r, err := sqlite.OpenReader(context.Background(), p, 1)
			if err != nil {
				t.Fatalf("OpenReader(%q): %v", p, err)
			}
			_ = r.Close()
		})
	}
}

// TestCheckPathCreatesNothing refuses paths Open could not use, and
// creates no file or directory either way.
func TestCheckPathCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(file, "x.db"),        // a file where a directory must be
		filepath.Join(file, "sub", "x.db"), // under a file
		filepath.Join(dir, "adir.db"),      // a directory where the file must be
		"",
	} {
		if err := sqlite.CheckPath(p); err == nil {
			t.Errorf("CheckPath(%q) = nil, want a refusal", p)
		}
	}
	ok := filepath.Join(dir, "new", "deeper", "x.db")
	if err := sqlite.CheckPath(ok); err != nil {
		t.Fatalf("CheckPath(%q) = %v", ok, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("CheckPath created files: %v", entries)
	}
}

// TestStoreFilesPrivate creates the database owner-only, and takes group
// and other access away from files an earlier version left open.
func TestStoreFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fresh.db")
	s, err := sqlite.Open(context.Background(), sqlite.Options{Path: p})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, p + "-wal", p + "-shm", p + ".lock"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(f), m)
		}
	}
	_ = s.Close()

	old := filepath.Join(dir, "old.db")
	s, err = sqlite.Open(context.Background(), sqlite.Options{Path: old})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := os.Chmod(old, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(context.Background(), sqlite.Options{Path: old})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, _ := os.Stat(old); fi.Mode().Perm() != 0o600 {
		t.Errorf("a store left 644 is still %o after Open, want 600", fi.Mode().Perm())
	}
}
