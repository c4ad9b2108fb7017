package main

import (
	"os"
	"path/filepath"
	"testing"
)

// diskUsage counts what is allocated, each inode once: zot's dedupe
// hard-links equal blobs, which take their room once.
func TestDiskUsageCountsHardLinksOnce(t *testing.T) {
	d := t.TempDir()
	blob := filepath.Join(d, "a", "blob")
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	one := diskUsage(d)
	if one < 1<<20 {
		t.Fatalf("a 1 MiB file counts %d bytes", one)
	}
	if err := os.MkdirAll(filepath.Join(d, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(blob, filepath.Join(d, "b", "blob")); err != nil {
		t.Fatal(err)
	}
	if two := diskUsage(d); two-one > 64<<10 {
		t.Fatalf("a hard link added %d bytes (%d -> %d)", two-one, one, two)
	}
	if n := diskUsage(filepath.Join(d, "gone")); n != 0 {
		t.Fatalf("a missing directory counts %d bytes", n)
	}
}
