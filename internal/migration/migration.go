// Package migration reads a store's numbered schema steps from an embedded
// directory. Each engine applies them its own way (SQLite's user_version,
// PostgreSQL's schema_migrations under an advisory lock); what a step is,
// and that steps are numbered 1, 2, 3 ... without gaps, is the same for
// all.
package migration

import (
	"cmp"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Migration is one numbered schema step.
type Migration struct {
	// Version is the step's number: the schema's version after it.
	Version int
	Name    string
	SQL     string
}

// Load returns the steps in dir of fsys, in order. Every file name must
// start with its number and an underscore (0001_init.sql); the numbers
// must run from 1 without gaps.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with its number", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %d", m.Name, i+1)
		}
	}
	return out, nil
}
