// Package writable answers whether floodgate could write where its
// configuration points, without leaving anything behind: checking a
// configuration (`floodgate config`) must never create files.
package writable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir proves that this process can create files in dir. It opens an
// unnamed temporary file there (O_TMPFILE), which never appears in the
// directory and vanishes on close; only where the file system does not
// support that does it create and remove a named file. Trying is the only
// reliable proof: permission bits miss read-only mounts and ACLs, and
// access(2) says yes to root where the file system still says no.
func Dir(dir string) error {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return unix.Close(fd)
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return &os.PathError{Op: "create", Path: dir, Err: err}
	}
	f, err := os.CreateTemp(dir, ".floodgate-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}

// Creatable tells whether dir is a directory this process can create
// files in, or one it could create: its nearest existing ancestor is such
// a directory. It creates nothing. The error says what stands in the way,
// as the end of a sentence about dir ("exists and is not a directory").
func Creatable(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil:
		if !fi.IsDir() {
			return errors.New("exists and is not a directory")
		}
		if err := Dir(dir); err != nil {
			return fmt.Errorf("is not writable: %w", err)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for parent := filepath.Dir(abs); ; {
		fi, err := os.Stat(parent)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("cannot be created: %s is not a directory", parent)
			}
			if err := Dir(parent); err != nil {
				return fmt.Errorf("cannot be created: %s is not writable: %w", parent, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("cannot be created: %w", err)
		}
		up := filepath.Dir(parent)
		if up == parent {
			return errors.New("cannot be created: no parent directory exists")
		}
		parent = up
	}
}

// Room refuses a file system with less than min bytes available to this
// process, where dir is.
func Room(dir string, min uint64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking free space in %s: %w", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < min {
		return fmt.Errorf("the disk holding %s is full: %d bytes available", filepath.Clean(dir), free)
	}
	return nil
}
