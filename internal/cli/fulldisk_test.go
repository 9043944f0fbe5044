package cli

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

// smallDisk mounts a tmpfs of size bytes at a temporary directory and
// returns it; unmounted at cleanup. It needs root (CI runs as root).
func smallDisk(tb testing.TB, size string) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		tb.Skipf("a full disk needs a small file system: mounting a tmpfs failed (not root?): %v %s", err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fill writes to path until the file system is full.
func fill(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// TestNotReadyOnFullDisk: a node whose store cannot write is not ready
// (a load balancer takes it out), and is ready again once there is room.
func TestNotReadyOnFullDisk(t *testing.T) {
	disk := smallDisk(t, "32m")
	m := startMain(t, func(c *config.Config) { c.DataDir = disk })
	c := newClient(t, m)
	if r := c.do("GET", "/readyz", ""); r.status != http.StatusOK {
		t.Fatalf("readyz before the disk fills: %d %s", r.status, r.body)
	}
	c.donate(gift(2500, "pm_card_visa"))

	filler := filepath.Join(disk, "filler")
	fill(t, filler)
	if r := c.do("GET", "/readyz", ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz on a full disk: %d %s, want 503", r.status, r.body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.do("GET", "/readyz", "").status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("still not ready after the disk was emptied")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
